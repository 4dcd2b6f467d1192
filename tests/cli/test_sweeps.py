"""Sweeps as a user runs them: `sac-train -m` with the basic sweeper, the joblib and submitit
launchers and the Optuna sweeper, all real, on tiny Pendulum-v1 runs; then sac-plot on a
sweep's output. Also: every experiment preset and launcher preset composes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from sac_cli.cli import plot
from sac_cli.cli.sweep.context import sweep_group, threads_per_job
from sac_cli.cli.sweep.naming import job_dirname
from sac_cli.cli.sweep.queue import HOPELESS
from sac_cli.cli.sweep.summary import outcome
from sac_cli.config import AgentName, TemperatureMode, TrainConfig, validate
from sac_cli.reporting.runs import parse_overrides
from sac_cli.reporting.tables import fmt

CONF = Path(__file__).resolve().parents[2] / "conf"
TINY = [
    "env=Pendulum-v1",
    "network.hidden_sizes=[16,16]",
    "agent.batch_size=32",
    "total_steps=300",
    "learning_starts=100",
    "eval.every=300",
    "eval.episodes=1",
    "logger.every=100",
]
# One torch thread: tiny networks on a busy machine run far slower with more. The joblib and
# submitit tests leave threads null on purpose: the launcher then sets the count.
ONE_THREAD = "threads=1"


def needs(*modules: str) -> pytest.MarkDecorator:
    """The sweep plugins are optional (`pip install -e '.[sweeps]'`)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} (.[sweeps])")


JOBLIB = needs("hydra_plugins.hydra_joblib_launcher")
SUBMITIT = needs("hydra_plugins.hydra_submitit_launcher", "submitit")
OPTUNA = needs("hydra_plugins.hydra_optuna_sweeper", "optuna", "sqlalchemy")


def sac_train(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sac_cli.cli.train", "-m", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("SUBMITIT_EXECUTOR", None)
    env.update(WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    return env


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def eval_returns(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["eval/return_mean"] for r in rows(run_dir) if "eval/return_mean" in r}


def assert_finished(run_dir: Path, total_steps: int) -> None:
    assert (run_dir / "checkpoints" / "final.pt").is_file(), run_dir
    assert max(eval_returns(run_dir)) == total_steps


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("sac-train: error: ")]


def wandb_records(path: Path):
    """The records of a W&B run file (`run-<id>.wandb`: a LevelDB-style log of protobufs)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, chunks = path.read_bytes(), 7, b""  # 7: the file header
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768  # records never straddle a 32 KiB block's 7-byte tail
        if left < 7:
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            chunks = b""
            yield record


# --- the basic sweeper ----------------------------------------------------------------------


def test_basic_sweep_names_groups_isolates_failures_and_plots(tmp_path: Path):
    """Two seeds x (a good env, an unknown env): four readable run directories, the two bad
    jobs fail alone and are named on stderr, each W&B run is grouped by sweep, named by its
    overrides and finished before the next job starts; sac-plot reads the sweep."""
    sweep = tmp_path / "sweeps" / "basic"
    result = sac_train(
        *TINY,
        "seed=0,1",
        "env.id=Pendulum-v1,NoSuchEnv-v0",
        ONE_THREAD,
        "logger.mode=offline",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    names = {
        f"env.id={env},seed={seed}" for seed in (0, 1) for env in ("Pendulum-v1", "NoSuchEnv-v0")
    }
    assert {p.name for p in sweep.iterdir() if p.is_dir()} == names

    # The failed jobs: one line each, naming the job; the others ran to the end.
    errors = error_lines(result.stderr)
    assert len(errors) == 2
    for num, seed in ((1, 0), (3, 1)):
        line = next(e for e in errors if f"job #{num} " in e)
        assert f"(env.id=NoSuchEnv-v0,seed={seed}) failed: unknown environment id" in line
        assert (sweep / f"env.id=NoSuchEnv-v0,seed={seed}" / "error.txt").is_file()
    assert "Traceback" not in result.stderr
    shown = sweep.relative_to(tmp_path)  # as seen from the working directory
    summary = f"sweep over, 4 jobs: 2 ran to the end, 2 failed; results in {shown}; plot them:"
    assert summary in result.stderr and f"sac-plot {shown}" in result.stderr
    good = [sweep / f"env.id=Pendulum-v1,seed={seed}" for seed in (0, 1)]
    for run_dir in good:
        assert_finished(run_dir, 300)
        assert not (run_dir / "error.txt").exists()
        # the user's config keeps logger.group/name null; the W&B run gets them filled in
        saved = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        assert saved["logger"]["group"] is None and saved["logger"]["name"] is None

    # W&B: grouped by sweep, named by the job's overrides, finished before the next job.
    runs = []
    for run_dir in good:
        (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
        records = list(wandb_records(run_file))
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        (exit_,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
        assert run.run_group == "sweeps/basic" == sweep_group(str(sweep.relative_to(tmp_path)))
        assert run.display_name == run_dir.name
        assert exit_.exit_code == 0
        runs.append((run_file, run))
    first_file, _ = runs[0]
    _, second = runs[1]
    assert (
        first_file.stat().st_mtime <= second.start_time.ToSeconds() + second.start_time.nanos * 1e-9
    )

    # sac-plot on the sweep: one group of two seeds (the failed jobs logged nothing).
    assert plot.main([str(sweep)]) == 0
    png = sweep / "learning_curves.png"
    assert png.stat().st_size > 10_000
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50
    table = (sweep / "results.md").read_text()
    (row,) = [line for line in table.splitlines() if line.startswith("| Pendulum-v1")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    finals = [eval_returns(d)[300] for d in good]
    best = [max(eval_returns(d).values()) for d in good]
    assert cells[2:5] == ["2", "300", fmt(float(np.mean(finals)))]
    assert cells[6] == fmt(float(np.mean(best)))


# --- joblib ---------------------------------------------------------------------------------


@JOBLIB
def test_joblib_sweep_with_two_workers_shares_the_cores(tmp_path: Path):
    sweep = tmp_path / "joblib"
    result = sac_train(
        *TINY,
        "seed=0,1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "logger.mode=disabled",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for seed in (0, 1):
        assert_finished(sweep / f"seed={seed}", 300)
    # threads=null: each of the two parallel jobs gets half of the cores, and no second
    # branch thread (the log line would say "(1 thread, critic and policy branches ...)")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, cpus // 2)
    threads = f"({share} thread{'s' if share > 1 else ''})"
    assert result.stderr.count(threads) == 2, result.stderr


# --- submitit -------------------------------------------------------------------------------


def _submitit_job_pids(sweep: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in argv and any(str(sweep).encode() in a for a in argv):
            pids.append(int(proc.name))
    return pids


@SUBMITIT
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds the job via /proc")
def test_submitit_local_sweep_requeues_a_preempted_job_that_resumes(tmp_path: Path):
    """Two jobs under submitit_local; the seed-0 job gets submitit's preemption signal (USR2)
    mid-run: it checkpoints, submitit requeues it, and it resumes from its own checkpoint."""
    sweep = tmp_path / "submitit"
    total = 1500
    args = [
        *TINY,
        f"total_steps={total}",
        "learning_starts=1000",
        "eval.every=500",
        "checkpoint.every=100000",  # no periodic checkpoint: the resume needs the signal's
        "seed=0,1",
        "hydra/launcher=submitit_local",
        "logger.mode=disabled",
        f"hydra.sweep.dir={sweep}",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "sac_cli.cli.train", "-m", *args],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        metrics = sweep / "seed=0" / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        (job,) = [pid for pid in _submitit_job_pids(sweep) if _job_dir_of(pid, sweep) == "seed=0"]
        os.kill(job, signal.SIGUSR2)
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    for seed in (0, 1):
        assert_finished(sweep / f"seed={seed}", total)
    logs = {p: p.read_text() for p in sweep.glob(".submitit/*/*_log.err")}
    (preempted,) = [text for text in logs.values() if "Requeued job" in text]
    assert f"in {sweep}/seed=0" in preempted
    assert "stopped by SIGUSR2 at step" in preempted
    stopped_at = int(preempted.split("stopped by SIGUSR2 at step ")[1].split(";")[0])
    assert f"resuming from {sweep}/seed=0/checkpoints/last.pt at step {stopped_at}" in preempted
    assert 0 < stopped_at < total
    # the resumed run logged every step once: no gap, no repeat
    steps = [r["step"] for r in rows(sweep / "seed=0") if "perf/sps" in r]
    assert steps == list(range(100, total + 1, 100))


def _job_dir_of(pid: int, sweep: Path) -> str | None:
    """The run directory a submitit job process trains in, from its open metrics.jsonl."""
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith(str(sweep)) and target.endswith("metrics.jsonl"):
                return Path(target).parent.name
    except OSError:
        return None
    return None


# --- Optuna ---------------------------------------------------------------------------------


@OPTUNA
def test_optuna_three_trials_with_sqlite_storage(tmp_path: Path):
    """The sac_tpe preset, three trials: each trial's value is its run's last evaluation
    return; a trial whose sampled tau is invalid fails alone; the SQLite study holds them."""
    import optuna

    sweep, db = tmp_path / "optuna", tmp_path / "study.db"
    result = sac_train(
        *[arg for arg in TINY if not arg.startswith("agent.batch_size=")],
        ONE_THREAD,
        "hydra/sweeper=sac_tpe",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage=sqlite:///{db}",
        "hydra.sweeper.study_name=pendulum",
        "agent.batch_size=choice(32,64)",
        "agent.tau=interval(0.5,1.1)",  # tau > 1 is invalid: those trials fail
        "logger.mode=disabled",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    study = optuna.load_study(study_name="pendulum", storage=f"sqlite:///{db}")
    trials = study.get_trials()
    assert len(trials) == 3
    run_dirs = [p.parent.parent for p in sweep.glob("*/.hydra/overrides.yaml")]
    assert len(run_dirs) == 3
    by_tau = {}
    for run_dir in run_dirs:
        overrides = parse_overrides(
            yaml.safe_load((run_dir / ".hydra/overrides.yaml").read_text())
        )
        by_tau[float(overrides["agent.tau"])] = run_dir
    states = set()
    for trial in trials:
        run_dir = by_tau[trial.params["agent.tau"]]
        states.add(trial.state)
        if trial.params["agent.tau"] > 1.0:
            assert trial.state == optuna.trial.TrialState.FAIL
            assert (run_dir / "error.txt").is_file()
            assert any(
                f"job #{trial.number} " in e and "agent.tau=" in e
                for e in error_lines(result.stderr)
            )
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.value == pytest.approx(eval_returns(run_dir)[300])
    # seeded TPE (sampler.seed=0) draws both kinds here
    assert states == {optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE}
    assert result.returncode == 1, result.stderr
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    complete = [t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert best["best_value"] == pytest.approx(max(complete))


# --- presets --------------------------------------------------------------------------------


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
REWARD_SCALE_2018A = {
    "halfcheetah": 5.0,
    "hopper": 5.0,
    "walker2d": 5.0,
    "ant": 5.0,
    "humanoid": 20.0,
}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_presets_compose_to_the_papers_settings(name: str):
    with initialize_config_module("sac_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}"])
    config: TrainConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    validate(config)
    _, variant, *rest = name.split("_")
    task = rest[0] if rest else "halfcheetah"  # sac_2018b: the table on the default task
    assert config.env.id.lower().startswith(task)
    assert config.network.hidden_sizes == [256, 256]
    assert (config.agent.batch_size, config.agent.tau, config.agent.gamma) == (256, 0.005, 0.99)
    assert config.agent.buffer_size == 1_000_000
    assert config.optimizer.actor_lr == config.optimizer.critic_lr == 3e-4
    assert (config.agent.updates_per_step, config.agent.target_update_interval) == (1, 1)
    assert config.agent.n_critics == 2 and config.network.activation.value == "relu"
    assert (config.network.log_std_min, config.network.log_std_max) == (-20.0, 2.0)
    assert config.learning_starts == 10_000 and not config.env.normalize_obs
    horizons = {"halfcheetah": 3_000_000, "hopper": 1_000_000, "walker2d": 3_000_000,
                "ant": 3_000_000, "humanoid": 10_000_000}  # fmt: skip
    assert config.total_steps == horizons[task]
    assert config.temperature.alpha == 1.0  # fixed at 1 (2018a), or its initial value (2018b)
    if variant == "2018a":
        assert config.agent.name == AgentName.sac_v1
        assert config.temperature.mode == TemperatureMode.fixed and config.temperature.alpha == 1.0
        assert config.agent.reward_scale == config.env.reward_scale == REWARD_SCALE_2018A[task]
        assert config.optimizer.value_lr == 3e-4
    else:
        assert config.agent.name == AgentName.sac and config.agent.reward_scale == 1.0
        assert config.optimizer.alpha_lr == 3e-4
        assert not hasattr(config.optimizer, "value_lr")  # no V_psi in 2018b
        assert config.temperature.mode == TemperatureMode.auto
        assert config.temperature.target_entropy is None  # -dim(A)


def test_presets_state_the_papers_table_in_full():
    """A preset is the paper's whatever sac-cli's defaults are: every value its table sets is
    written in the preset itself, so composing it over a schema whose defaults all differ
    gives the same settings."""
    table = {
        "agent": {"batch_size", "gamma", "tau", "buffer_size", "updates_per_step",
                  "target_update_interval", "n_critics"},
        "network": {"hidden_sizes", "activation", "log_std_min", "log_std_max"},
        "optimizer": {"actor_lr", "critic_lr"},
        "env": {"normalize_obs"},
    }  # fmt: skip
    for variant, own in (("2018a", {"value_lr"}), ("2018b", {"alpha_lr"})):
        preset = yaml.safe_load((CONF / "experiment" / f"sac_{variant}.yaml").read_text())
        for group, keys in table.items():
            expected = keys | own if group == "optimizer" else keys
            assert expected <= set(preset[group]), (variant, group)
        assert preset["learning_starts"] == 10_000


def test_the_command_line_wins_over_an_experiment():
    with initialize_config_module("sac_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=sac_2018b_hopper", "env=Hopper-v5", "seed=3"])
    assert (cfg.env.id, cfg.seed, cfg.agent.name) == ("Hopper-v5", 3, "sac")


@SUBMITIT
@pytest.mark.parametrize("launcher", ["slurm", "slurm_cpu"])
def test_slurm_presets_render_to_sbatch_options(launcher: str):
    """The presets compose against the plugin's schema, and submitit turns them into the
    #SBATCH lines that make requeue-and-resume work (no cluster needed to render them)."""
    from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

    with initialize_config_module("sac_cli.conf", version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"hydra/launcher={launcher}", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    params = OmegaConf.to_container(cfg.hydra.launcher)
    assert params["max_num_timeout"] >= 1 and params["timeout_min"] >= 60
    # what hydra-submitit-launcher hands to submitit's SlurmExecutor, in sbatch's names
    for key in ("_target_", "submitit_folder", "max_num_timeout", "name"):
        params.pop(key)
    renamed = SlurmExecutor._equivalence_dict()
    sbatch = {renamed.get(k, k): v for k, v in params.items() if v is not None}
    sbatch["mem"] = f"{sbatch['mem']}GB"
    text = _make_sbatch_string(command="python -m submitit.core._submit", folder="/x", **sbatch)
    assert "#SBATCH --partition=gpu" in text
    assert "#SBATCH --requeue" in text
    assert f"#SBATCH --signal=USR2@{params['signal_delay_s']}" in text
    assert f"#SBATCH --time={params['timeout_min']}" in text
    assert ("#SBATCH --gpus-per-node=1" in text) == (launcher == "slurm")


@OPTUNA
def test_sac_tpe_preset_composes():
    with initialize_config_module("sac_cli.conf", version_base="1.3"):
        cfg = compose("train", overrides=["hydra/sweeper=sac_tpe"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == "maximize" and sweeper.sampler._target_.endswith("TPESampler")
    assert set(sweeper.params) == {
        "optimizer.actor_lr",
        "optimizer.critic_lr",
        "agent.tau",
        "agent.batch_size",
    }
    assert sweeper.params["optimizer.actor_lr"].startswith("tag(log")


# --- the pieces -----------------------------------------------------------------------------


def test_job_dirname_is_readable_safe_and_unique():
    assert job_dirname("optimizer.critic_lr=0.001,seed=1", 1) == "optimizer.critic_lr=0.001,seed=1"
    assert job_dirname("network.hidden_sizes=[16,16]", 3) == "network.hidden_sizes=[16,16],seed=3"
    assert job_dirname("", 0) == "seed=0"
    slash = job_dirname("env.id=dm_control/cheetah-run", 0)
    assert "/" not in slash and slash.startswith("env.id=dm_control_cheetah-run,seed=0-")
    assert slash != job_dirname("env.id=dm_control_cheetah-run", 0)
    optuna = job_dirname(
        "agent.tau=0.0010823069587789706,optimizer.actor_lr=4.160958373607193e-05", 0
    )
    assert optuna.startswith("agent.tau=0.001082,optimizer.actor_lr=4.161e-05,seed=0-")
    assert optuna != job_dirname(
        "agent.tau=0.0010823069587789707,optimizer.actor_lr=4.160958373607193e-05", 0
    )
    assert len(job_dirname("x=" + "a" * 400, 0)) < 140


def test_threads_per_job_follow_the_launcher():
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    local = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    assert threads_per_job({"_target_": basic}, 16) is None  # torch's default
    assert threads_per_job({"_target_": joblib, "n_jobs": 4}, 16) == 4
    assert threads_per_job({"_target_": joblib, "n_jobs": -1}, 16) == 1
    assert threads_per_job({"_target_": joblib, "n_jobs": -2}, 16) == 1  # 15 jobs at once
    assert threads_per_job({"_target_": joblib, "n_jobs": 32}, 16) == 1
    assert threads_per_job({"_target_": joblib, "n_jobs": 1}, 16) is None
    assert threads_per_job({"_target_": local, "cpus_per_task": None}, 16) == 1
    assert threads_per_job({"_target_": slurm, "cpus_per_task": 6}, 64) == 6
    assert threads_per_job({"_target_": slurm, "cpus_per_task": None}, 64) is None


def test_sweep_summary_names_only_what_happened():
    """The closing summary counts each outcome that occurred, and no others."""
    assert outcome(2, 0, 0) == "2 jobs, all ran to the end"
    assert outcome(1, 0, 0) == "1 job, ran to the end"
    assert outcome(2, 2, 0) == "2 jobs: 2 failed"
    assert outcome(4, 2, 0) == "4 jobs: 2 ran to the end, 2 failed"
    assert outcome(3, 1, 1) == "3 jobs: 1 ran to the end, 1 failed, 1 stopped (resumable)"


@pytest.mark.parametrize(
    ("reason", "hopeless"),
    [("PartitionConfig", True), ("QOSMaxCpuPerJobLimit", True), ("PartitionTimeLimit", True),
     ("Resources", False), ("Priority", False), ("BeginTime", False), ("QOSGrpCpuLimit", False)],
)  # fmt: skip
def test_pending_reasons_that_waiting_will_not_resolve(reason: str, hopeless: bool):
    assert bool(HOPELESS.match(reason)) == hopeless
