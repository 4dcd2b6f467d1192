"""sac-eval as a user runs it: on a fresh checkpoint and on a run directory, with videos, and
one clear line (exit 2, no traceback, nothing on disk touched) for every bad input."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.cli import ABSENT_CUDA_INDEX, cli_env, read_metrics, run_cli, without_wall_clock
from omegaconf import OmegaConf

from sac_cli.cli import evaluate
from sac_cli.config import schema_of
from sac_cli.training.builders import build_parts, build_trainer

EVAL_KEYS = {"return_mean", "return_std", "returns", "lengths", "env_id", "step", "checkpoint"}
# Two evaluation episodes per evaluation, so that sac-eval episodes=2 repeats the last one.
TRAIN = [
    "env=Pendulum-v1",
    "network.hidden_sizes=[32,32]",
    "total_steps=600",
    "learning_starts=200",
    "agent.batch_size=64",
    "agent.buffer_size=2000",
    "eval.every=300",
    "eval.episodes=2",
    "checkpoint.every=200",
    "logger.every=100",
    "threads=1",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    result = run_cli("sac-train", *TRAIN, "logger.mode=disabled", f"hydra.run.dir={root / 'run'}",
                     cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "run"


@pytest.fixture
def run_copy(run_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the trained run: tests that write into it do not disturb others."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


def call_main(*args: str) -> subprocess.CompletedProcess:
    """sac_cli.cli.evaluate.main() as the console script runs it, in this process (no second of
    torch import per call): argv, exit code, stdout and stderr as a subprocess shows them."""
    saved_argv, saved_env = sys.argv, dict(os.environ)
    os.environ.pop("HYDRA_FULL_ERROR", None)
    sys.argv = ["sac-eval", *args]
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            evaluate.main()
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


def test_eval_of_a_run_directory_repeats_the_last_training_evaluation(run_copy: Path,
                                                                      tmp_path: Path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = run_cli("sac-eval", f"checkpoint={run_copy}", "episodes=2", cwd=cwd)
    assert result.returncode == 0, result.stderr
    report = json.loads((run_copy / "eval-last-step-600.json").read_text())
    assert report.keys() >= EVAL_KEYS
    assert report["checkpoint"] == str((run_copy / "checkpoints" / "last.pt").resolve())
    assert (report["env_id"], report["step"], report["lengths"]) == ("Pendulum-v1", 600, [200, 200])
    assert report["deterministic"] is True and len(report["returns"]) == 2
    # Same seeds, same deterministic policy: exactly the training's evaluation at step 600.
    last_eval = [r for r in read_metrics(run_copy) if "eval/return_mean" in r][-1]
    assert last_eval["step"] == 600
    assert report["return_mean"] == last_eval["eval/return_mean"]
    assert report["return_std"] == last_eval["eval/return_std"]
    # The table: a row per episode, then mean and std.
    lines = result.stdout.splitlines()
    assert "Pendulum-v1" in lines[0] and "step 600" in lines[0]
    rows = [line.split() for line in lines[2:6]]
    assert [row[0] for row in rows] == ["0", "1", "mean", "std"]
    assert float(rows[2][1]) == pytest.approx(report["return_mean"], abs=0.01)
    assert not list(cwd.iterdir())  # no outputs/, .hydra/ or log file in the working directory


def test_eval_of_a_checkpoint_file_with_overrides(run_copy: Path, tmp_path: Path):
    best = run_copy / "checkpoints" / "best.pt"
    args = [f"checkpoint={best}", "episodes=3", "seed=5", "device=cpu"]
    result = call_main(*args)
    assert result.returncode == 0, result.stderr
    step = torch.load(best, weights_only=True)["step"]
    report = json.loads((run_copy / f"eval-best-step-{step}-seed-5.json").read_text())
    assert (report["episodes"], report["seed"], len(report["returns"])) == (3, 5, 3)
    assert report["checkpoint"] == str(best.resolve())
    assert report["step"] == step

    reports = []
    for _ in range(2):
        stochastic = call_main(*args, "stochastic=true")
        assert stochastic.returncode == 0, stochastic.stderr
        stochastic_file = run_copy / f"eval-best-step-{step}-stochastic-seed-5.json"
        reports.append(json.loads(stochastic_file.read_text()))
    assert reports[0]["returns"] == reports[1]["returns"]  # seeded: reproducible
    assert reports[0]["deterministic"] is False
    assert reports[0]["returns"] != report["returns"]


@pytest.fixture
def one_thread():
    # Tiny networks: one torch thread is several times faster than two on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_eval_of_a_sac_v1_checkpoint(tmp_path: Path, one_thread):
    """The 2018a variant (V_psi, fixed temperature) rebuilt from its checkpoint alone."""
    config = OmegaConf.merge(schema_of({"agent": {"name": "sac_v1"}}), {
        "env": {"id": "Pendulum-v1"}, "agent": {"name": "sac_v1", "buffer_size": 1000},
        "temperature": {"mode": "fixed", "alpha": 0.2}, "network": {"hidden_sizes": [16, 16]},
        "total_steps": 250, "learning_starts": 100, "eval": {"every": 250, "episodes": 1},
        "logger": {"mode": "disabled"}, "threads": 1})
    cfg = OmegaConf.to_object(config)
    trainer = build_trainer(cfg, tmp_path, build_parts(cfg, torch.device("cpu")),
                            OmegaConf.to_container(config, enum_to_str=True))
    trainer.run()
    result = call_main(f"checkpoint={tmp_path}", "episodes=1")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval-last-step-250.json").read_text())
    assert report["return_mean"] == trainer.state.last_eval_return  # the training's own evaluation
    assert "value.net.0.weight" in torch.load(tmp_path / "checkpoints" / "final.pt",
                                              weights_only=True)["agent"]


needs_video = pytest.mark.skipif(
    importlib.util.find_spec("moviepy") is None or importlib.util.find_spec("pygame") is None,
    reason="video=true needs moviepy and pygame (pip install 'moviepy>=2,<3' 'pygame>=2.1,<3')",
)


@needs_video
def test_eval_records_a_video_per_episode(run_copy: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    result = call_main(f"checkpoint={run_copy}/checkpoints/final.pt", "episodes=2", "video=true")
    assert result.returncode == 0, result.stderr
    videos = sorted(p.name for p in (run_copy / "videos").iterdir())
    assert videos == ["final-step-600-episode-0.mp4", "final-step-600-episode-1.mp4"]
    assert all((run_copy / "videos" / v).stat().st_size > 1000 for v in videos)
    assert json.loads((run_copy / "eval-final-step-600.json").read_text())["videos"] == [
        str(run_copy.resolve() / "videos" / v) for v in videos]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # nothing in the working directory


@needs_video
def test_training_records_a_video_per_evaluation_without_changing_it(run_dir: Path,
                                                                     tmp_path: Path):
    video_run = tmp_path / "run"
    result = run_cli("sac-train", *TRAIN, "eval.video=true", "logger.mode=offline",
                     f"hydra.run.dir={video_run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (video_run / "videos").iterdir()) == [
        "eval-step-300.mp4", "eval-step-600.mp4"]
    # Filming the first episode changes nothing that is learned or measured.
    def evals(run: Path) -> list[dict]:
        return without_wall_clock([r for r in read_metrics(run) if "eval/return_mean" in r])
    assert evals(video_run) == evals(run_dir)
    assert len(list((video_run / "wandb").rglob("media/videos/eval/*.mp4"))) == 2


def write_malicious(path: Path, target: Path) -> None:
    class WritesAFile:
        def __reduce__(self):
            return (os.system, (f"touch {target}",))

    torch.save({"format": 1, "agent": WritesAFile()}, path)


def write_raw_malicious(path: Path, target: Path) -> None:
    class OpensAFile:
        def __reduce__(self):
            return (open, (str(target), "w"))

    path.write_bytes(pickle.dumps({"format": 1, "agent": OpensAFile()}, protocol=2))


def expect_one_line_error(result, *words: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sac-eval: error: "), result.stderr
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in result.stderr and not result.stdout
    return lines[0]


@pytest.mark.parametrize("writer", [write_malicious, write_raw_malicious],
                         ids=["torch-zip-os.system", "raw-pickle-open"])
def test_malicious_pickle_is_refused_and_creates_no_file(run_copy: Path, tmp_path: Path, writer):
    evil = run_copy / "checkpoints" / "evil.pt"
    target = tmp_path / "pwned"
    writer(evil, target)
    before = snapshot(run_copy)
    # The real process once (nothing else of it must run), then in-process.
    for result in (run_cli("sac-eval", f"checkpoint={evil}", cwd=tmp_path),
                   call_main(f"checkpoint={evil}")):
        expect_one_line_error(result, "refusing to load", "could run code")
        assert not target.exists()
    assert snapshot(run_copy) == before


def damaged(run: Path, kind: str) -> Path:
    good = (run / "checkpoints" / "final.pt").read_bytes()
    path = run / "checkpoints" / f"{kind}.pt"
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "corrupt":
        middle = len(good) // 2
        path.write_bytes(good[:middle] + bytes(b ^ 0x5A for b in good[middle:middle + 64])
                         + good[middle + 64:])
    elif kind == "foreign":  # Pendulum weights, but its config says HalfCheetah
        state = torch.load(run / "checkpoints" / "final.pt", weights_only=True)
        state["config"]["env"]["id"] = state["env_id"] = "HalfCheetah-v4"
        torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["checkpoint={run}/checkpoints/missing.pt"], ["missing.pt", "does not exist"]),
        (["checkpoint={run}/checkpoints"], ["without checkpoints/last.pt"]),
        ([], ["no checkpoint given"]),
        (["checkpoint={truncated}"], ["truncated.pt", "not a readable checkpoint"]),
        (["checkpoint={corrupt}"], ["corrupt.pt", "corrupt"]),
        (["checkpoint={foreign}"], ["trained on HalfCheetah-v4", "observation size"]),
        (["checkpoint={run}", "env_id=HalfCheetah-v4"], ["Pendulum-v1", "HalfCheetah-v4 has 17"]),
        (["checkpoint={run}", "env_id=NoSuchEnv-v0"], ["NoSuchEnv-v0"]),
        (["checkpoint={run}", "episodes=0"], ["episodes=0"]),
        (["checkpoint={run}", "seed=-1"], ["seed=-1"]),
        (["checkpoint={run}", f"device={ABSENT_CUDA_INDEX}"], [ABSENT_CUDA_INDEX]),
        (["checkpoint={run}", "episods=3"], ["episods"]),
    ],
    ids=["missing", "dir-without-last", "no-checkpoint", "truncated", "corrupt",
         "shapes-from-config", "shapes-from-env-override", "unknown-env", "no-episodes", "bad-seed",
         "no-such-device", "typo"],
)
def test_bad_input_is_one_line_and_harms_nothing(run_copy: Path, tmp_path: Path,
                                                 args: list[str], words: list[str]):
    paths = {kind: damaged(run_copy, kind) for kind in ("truncated", "corrupt", "foreign")}
    before = snapshot(run_copy)
    result = call_main(*[a.format(run=run_copy, **paths) for a in args])
    expect_one_line_error(result, *words)
    assert snapshot(run_copy) == before
    assert not list(run_copy.glob("eval*.json"))


def test_unwritable_run_directory_is_one_line(run_copy: Path, tmp_path: Path):
    before = snapshot(run_copy)
    run_copy.chmod(0o555)
    try:
        if os.geteuid() == 0:
            # root writes through a read-only mode unless it gives up CAP_DAC_OVERRIDE: run the
            # command as the console script would, without that capability.
            result = subprocess.run(
                ["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                 sys.executable, "-m", "sac_cli.cli.evaluate", f"checkpoint={run_copy}",
                 "episodes=1"],
                cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
            )  # fmt: skip
        else:
            result = call_main(f"checkpoint={run_copy}", "episodes=1")
    finally:
        run_copy.chmod(0o755)
    expect_one_line_error(result, "cannot write to", str(run_copy))
    assert snapshot(run_copy) == before


def test_evaluating_another_checkpoint_keeps_the_first_result(run_copy: Path):
    for name in ("best", "last"):
        result = call_main(f"checkpoint={run_copy / 'checkpoints' / f'{name}.pt'}", "episodes=1")
        assert result.returncode == 0, result.stderr
        step = torch.load(run_copy / "checkpoints" / f"{name}.pt", weights_only=True)["step"]
        assert f"wrote {run_copy.resolve() / f'eval-{name}-step-{step}.json'}" in result.stdout
    assert len(list(run_copy.glob("eval-*.json"))) == 2
