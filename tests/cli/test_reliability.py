"""Faults found by a probe of the CLI, each through the real command where a user meets it:
silent data corruption, divergence, two processes in one run directory, a full disk, crafted
checkpoints and buffer files, oversized buffers, environments without a time limit, bad
metrics rows, start-up signals, custom environment modules."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.cli import TINY, cli_env, read_metrics, run_cli
from helpers.files import copy_run, snapshot

from sac_cli.training.replay import ReplayBuffer

NAN_ENV = "env.id=helpers.envs:NaNRewardPendulum-v0"
ENDLESS_ENV = "env.id=helpers.envs:EndlessPendulum-v0"


def train(run_dir: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_cli(
        "sac-train", *TINY, "logger.mode=disabled", *extra, f"hydra.run.dir={run_dir}",
        cwd=run_dir.parent, timeout=timeout,
    )  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess, prog: str = "sac-train") -> str:
    """The one line a refused command prints besides log and progress lines."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines()
             if not line.startswith("[") and not re.match(r"step \d+/\d+ \|", line)]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr
    return lines[0]


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def last_logged_step(run_dir: Path) -> int:
    """The newest step in metrics.jsonl while it is being written (a torn line is skipped)."""
    steps = [0]
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue
    return max(steps)


def buffer_of(run_dir: Path, checkpoint: str = "last.pt") -> dict:
    state = load(run_dir / "checkpoints" / checkpoint)
    return load(run_dir / "checkpoints" / state["buffer_file"])


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 500 steps: Pendulum's episodes last 200, so it ends mid-episode."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    result = train(run_dir, "total_steps=500")
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.fixture
def run_copy(finished: Path, tmp_path: Path) -> Path:
    return copy_run(finished, tmp_path)


# --- data that was silently wrong ----------------------------------------------------------


def test_extending_a_run_that_ended_mid_episode_keeps_the_cut_as_a_truncation(run_copy: Path):
    obs_dim, act_dim = 3, 1
    col_truncated, col_final = obs_dim + act_dim + 2, obs_dim + act_dim + 3
    ended = buffer_of(run_copy)
    true_next_obs = ended["data"][500, :obs_dim].clone()  # slot i + 1 holds s' of slot i
    assert ended["data"][499, col_truncated] == 1.0

    result = train(run_copy, "total_steps=700")
    assert result.returncode == 0, result.stderr
    extended = buffer_of(run_copy)
    row = extended["data"][499]
    assert row[obs_dim + act_dim + 1] == 0.0 and row[col_truncated] == 1.0
    final = extended["final_obs"][int(row[col_final])]
    assert torch.equal(final, true_next_obs)
    # The resumed run started a new episode in slot 500: its reset observation is elsewhere.
    assert not torch.equal(extended["data"][500, :obs_dim], true_next_obs)

    buffer = ReplayBuffer(extended["capacity"], obs_dim, act_dim, "cpu")
    buffer.load_state_dict(extended)
    buffer.generator.manual_seed(0)
    batch = buffer.sample(4096)
    picked = (batch.obs == extended["data"][499, :obs_dim]).all(dim=1)
    assert picked.any()
    assert torch.equal(batch.next_obs[picked], final.expand(int(picked.sum()), -1))


def test_a_refused_resume_leaves_the_run_directory_as_it_was(run_copy: Path):
    before = snapshot(run_copy)
    line = one_error_line(train(run_copy, "total_steps=700", "seed=1"))
    assert "seed=0 (now 1)" in line
    assert snapshot(run_copy) == before  # .hydra/config.yaml and overrides.yaml included
    assert "seed: 0" in (run_copy / ".hydra" / "config.yaml").read_text()


def test_divergence_stops_with_one_line_and_keeps_the_last_finite_checkpoint(tmp_path: Path):
    run_dir = tmp_path / "nan"
    result = train(run_dir, NAN_ENV, "total_steps=1500", "logger.mode=offline")
    line = one_error_line(result)
    # Rewards turn NaN after step 450; the next loss row is at step 500.
    assert "training diverged at step 500: loss/critic is nan" in line
    assert "last.pt keeps step 400" in line
    last = load(run_dir / "checkpoints" / "last.pt")
    assert last["step"] == 400
    assert all(torch.isfinite(t).all() for t in last["agent"].values())
    assert not (run_dir / "checkpoints" / "final.pt").exists()

    def strict(token: str):
        raise ValueError(f"not strict JSON: {token}")

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(text, parse_constant=strict) for text in lines]
    assert rows[-1]["step"] == 500 and rows[-1]["loss/critic"] is None

    plot = run_cli("sac-plot", str(run_dir), "--metric", "loss/critic", cwd=tmp_path)
    assert plot.returncode == 0, plot.stderr
    assert f"{run_dir} diverged at step 500 (loss/critic is not finite)" in plot.stderr
    results = (run_dir / "results.md").read_text()
    assert "Diverged runs" in results and "at step 500" in results


def test_a_checkpoint_is_never_written_with_non_finite_weights(tmp_path: Path):
    from omegaconf import OmegaConf

    from sac_cli.config import TrainConfig
    from sac_cli.training.builders import build_parts, build_trainer
    from sac_cli.training.resume import Diverged

    config = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.from_dotlist(
        ["env.id=Pendulum-v1", "network.hidden_sizes=[8]", "agent.buffer_size=1000"]))
    cfg = OmegaConf.to_object(config)
    trainer = build_trainer(cfg, tmp_path, build_parts(cfg, torch.device("cpu")),
                            OmegaConf.to_container(config, enum_to_str=True))  # fmt: skip
    trainer.start()
    with torch.no_grad():
        next(trainer.agent.parameters()).fill_(math.inf)
    with pytest.raises(Diverged, match="the weights are not finite"):
        trainer._save("last.pt")
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


def test_a_second_process_in_a_run_directory_is_refused(tmp_path: Path):
    run_dir = tmp_path / "busy"
    first = subprocess.Popen(
        [sys.executable, "-m", "sac_cli.cli.train", *TINY, "logger.mode=disabled",
         "total_steps=1000000", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "metrics.jsonl").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        hydra_before = snapshot(run_dir / ".hydra")
        second = train(run_dir, "total_steps=1000000", "seed=3")
        line = one_error_line(second)
        assert f"{run_dir} is in use by another sac-train (pid {first.pid})" in line
        assert snapshot(run_dir / ".hydra") == hydra_before
        assert first.poll() is None  # the first one trains on, untouched
    finally:
        first.kill()
        first.wait()
    # The OS released the lock with the killed process: the directory can be resumed.
    again = train(run_dir, "total_steps=700")
    assert again.returncode == 0, again.stderr


# --- cost that grew with capacity --------------------------------------------------------


def test_a_buffer_file_grows_with_the_rows_stored_not_the_capacity(tmp_path: Path):
    buffer = ReplayBuffer(100_000, 17, 6, "cpu")
    sizes = []
    for rows in (10, 1000):
        while len(buffer) < rows:
            buffer.add([0.0] * 17, [0.0] * 6, 1.0, [0.0] * 17, False, False)
        path = tmp_path / f"buffer-{rows}.pt"
        torch.save(buffer.state_dict(), path)
        sizes.append(path.stat().st_size)
    row_bytes = 4 * buffer.width
    assert sizes[0] < 100 * row_bytes + 20_000  # not 100,000 rows' worth (2.7 MB)
    assert sizes[1] - sizes[0] == pytest.approx(990 * row_bytes, rel=0.05)


# --- one clear line instead of a traceback --------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 4 MiB tmpfs (CI runs as root); unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_last_one(small_disk: Path):
    run_dir = small_disk / "run"
    first = train(run_dir, "total_steps=400")
    assert first.returncode == 0, first.stderr
    filler = small_disk / "filler"
    # Fill the disk, then free 40 kB of it.
    with open(filler, "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)
    os.truncate(filler, filler.stat().st_size - 40_000)
    before = snapshot(run_dir / "checkpoints")
    result = train(run_dir, "total_steps=1200")
    line = one_error_line(result)
    assert "No space left on device" in line and "free some space there" in line
    assert snapshot(run_dir / "checkpoints") == before
    assert load(run_dir / "checkpoints" / "last.pt")["step"] == 400


def craft(checkpoint: Path, target: Path, **changes) -> Path:
    """A copy of a real checkpoint with config keys (dotted) or top-level fields changed."""
    state = load(checkpoint)
    for key, value in changes.items():
        if key.startswith("config."):
            *parents, leaf = key.split(".")[1:]
            node = state["config"]
            for parent in parents:
                node = node[parent]
            node[leaf] = value
        else:
            state[key] = value
    torch.save(state, target)
    return target


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"config.network.hidden_sizes": [100_000, 100_000]}, "actor.net.0.weight"),
        ({"config.network.hidden_sizes": [20_000, 20_000]}, "expected"),
        ({"config.network.hidden_sizes": [-5]}, "network.hidden_sizes=[-5]"),
        ({"config.seed": -1}, "seed=-1 must be zero or more"),
        ({"config.agent.batch_size": "many"}, "batch_size"),
        ({"step": -1}, "its step (-1) is not a count of steps"),
    ],
    ids=["huge-net", "large-net", "negative-size", "negative-seed", "bad-type", "negative-step"],
)
def test_sac_eval_checks_a_checkpoints_embedded_config_first(finished: Path, tmp_path: Path,
                                                            changes: dict, named: str):
    crafted = craft(finished / "checkpoints" / "best.pt", tmp_path / "crafted.pt", **changes)
    started = time.monotonic()
    result = run_cli("sac-eval", f"checkpoint={crafted}", "episodes=1", "device=cpu",
                     cwd=tmp_path, timeout=120)  # fmt: skip
    assert named in one_error_line(result, "sac-eval")
    assert time.monotonic() - started < 60  # nothing of the crafted size was built


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda s: s.update(data=torch.zeros(s["data"].shape[0], 3)), "'data' is torch.float32"),
        (lambda s: s.update(data=7), "'data' is int"),
        (lambda s: s.update(data=s["data"].double()), "torch.float64"),
        (lambda s: s.update(size="x"), "'size' is 'x', not a count"),
        (lambda s: s.update(final_slots=torch.zeros(5, dtype=torch.int64)), "'final_slots'"),
    ],
    ids=["other-width", "not-a-tensor", "other-dtype", "bad-counter", "inconsistent-finals"],
)
def test_a_buffer_file_of_the_wrong_shape_or_type_is_one_line(run_copy: Path, change, named):
    state = load(run_copy / "checkpoints" / "last.pt")
    path = run_copy / "checkpoints" / state["buffer_file"]
    buffer = load(path)
    change(buffer)
    torch.save(buffer, path)
    before = snapshot(run_copy)
    line = one_error_line(train(run_copy, "total_steps=700"))
    assert named in line and "cannot be resumed from" in line
    assert snapshot(run_copy) == before


def test_a_buffer_larger_than_memory_is_one_line_before_allocating(tmp_path: Path):
    line = one_error_line(train(tmp_path / "big", "agent.buffer_size=4000000000"))
    assert "agent.buffer_size=4000000000 needs" in line and "GiB for the replay buffer" in line
    assert "lower agent.buffer_size" in line


def test_an_environment_without_time_limit_checkpoints_evaluates_and_stops(tmp_path: Path):
    run_dir = tmp_path / "endless"
    result = train(run_dir, ENDLESS_ENV, "total_steps=1000", "checkpoint.every=200",
                   "eval.every=500", "eval.max_episode_steps=50")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = read_metrics(run_dir)
    assert not [r for r in rows if "train/episode_return" in r]  # its one episode never ended
    assert [r["step"] for r in rows if "eval/return_mean" in r] == [500, 1000]
    # Checkpoints in mid-episode, at most checkpoint.every steps late: at 400 and 800, each
    # recording its cut as a truncation.
    data = buffer_of(run_dir)["data"]
    truncated = (data[:, 3 + 1 + 2] == 1.0).nonzero().flatten().tolist()
    assert truncated == [399, 799, 999]

    evaluation = run_cli("sac-eval", f"checkpoint={run_dir}", "episodes=1",
                         f"env_id={ENDLESS_ENV.split('=', 1)[1]}", cwd=tmp_path)  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr
    assert json.loads((run_dir / "eval-last-step-1000.json").read_text())["lengths"] == [50]

    # SIGTERM mid-episode: a checkpoint and a clean stop, with the command to resume.
    process = subprocess.Popen(
        [sys.executable, "-m", "sac_cli.cli.train", *TINY, "logger.mode=disabled", ENDLESS_ENV,
         "total_steps=1000000", "eval.max_episode_steps=50", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while last_logged_step(run_dir) < 1600:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "to resume: sac-train " in err and "hydra.run.dir=endless" in err
    assert load(run_dir / "checkpoints" / "last.pt")["step"] > 1600


def test_sac_eval_imports_no_module_named_only_by_a_checkpoint(tmp_path: Path):
    run_dir = tmp_path / "custom"
    assert train(run_dir, ENDLESS_ENV, "total_steps=300").returncode == 0
    line = one_error_line(run_cli("sac-eval", f"checkpoint={run_dir}", cwd=tmp_path), "sac-eval")
    assert "pass env_id=helpers.envs:EndlessPendulum-v0" in line
    missing = train(tmp_path / "missing", "env.id=no_such_module:Env-v0")
    assert "cannot import no_such_module" in one_error_line(missing)


@pytest.mark.parametrize("step", ["Infinity", "NaN", "1e300", "-3", "2.5", "true"])
def test_sac_plot_names_the_file_and_row_of_a_bad_step(tmp_path: Path, step: str):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text(f'{{"step": 100, "eval/return_mean": 1.0}}\n'
                       f'{{"step": {step}, "eval/return_mean": 2.0}}\n')  # fmt: skip
    result = run_cli("sac-plot", str(run_dir), cwd=tmp_path)
    line = one_error_line(result, "sac-plot")
    assert f"{metrics}, line 2: step" in line and "repair or remove that row" in line


# --- small but real -------------------------------------------------------------------------


def test_sigterm_during_start_up_is_one_line_and_writes_nothing(tmp_path: Path):
    run_dir = tmp_path / "early"
    process = subprocess.Popen(
        [sys.executable, "-c", "from sac_cli.cli.entry import sac_train; sac_train()", *TINY,
         "logger.mode=disabled", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(0.5)  # in the middle of importing torch
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM during start-up, before training: nothing saved" in err
    assert "Traceback" not in err
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.jsonl").exists()


def test_sac_eval_of_a_read_only_checkpoint_writes_to_out(finished: Path, tmp_path: Path):
    import shutil

    run_dir = tmp_path / "readonly"
    shutil.copytree(finished, run_dir)
    before = snapshot(run_dir)
    out = tmp_path / "evaluations"
    for folder in (run_dir, run_dir / "checkpoints"):
        folder.chmod(0o555)
    try:
        # As root, give up CAP_DAC_OVERRIDE so that the read-only modes hold.
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
        result = subprocess.run(
            [*(prefix if os.geteuid() == 0 else []), sys.executable, "-m", "sac_cli.cli.evaluate",
             f"checkpoint={run_dir}", "episodes=1", f"out={out}"],
            cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        for folder in (run_dir, run_dir / "checkpoints"):
            folder.chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out / 'eval-last-step-500.json'}" in result.stdout
    assert json.loads((out / "eval-last-step-500.json").read_text())["step"] == 500
    assert snapshot(run_dir) == before
