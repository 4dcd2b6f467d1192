"""Crash-safe resume through the real CLI: a SIGKILLed run, resumed, ends bit-identical to an
uninterrupted one; SIGTERM, SIGINT and SIGUSR1 write a checkpoint and exit cleanly; a resume
with other settings, damaged files or an unwritable folder gets one line and harms nothing."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.cli import cli_env, read_metrics, run_cli, without_wall_clock
from helpers.files import copy_run, snapshot

from sac_cli.cli import train

RESUME_ARGS = [
    "env=Pendulum-v1",
    "network.hidden_sizes=[32,32]",
    "total_steps=1600",
    "learning_starts=200",
    "agent.batch_size=64",
    "agent.buffer_size=5000",
    "checkpoint.every=400",
    "eval.every=800",
    "eval.episodes=1",
    "logger.every=500",
    "logger.mode=offline",
    "threads=1",
]


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_leftover_process():
    """A failed test must not leave a training process running."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


def start_train(run_dir: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "sac_cli.cli.train", *RESUME_ARGS, *extra,
         f"hydra.run.dir={run_dir}"],
        cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    STARTED.append(process)
    return process


def checkpoint_step(path: Path) -> int | None:
    if not path.exists():
        return None
    return int(torch.load(path, weights_only=True)["step"])


def logged_steps(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [int(line.split(",", 1)[0].split(":")[1]) for line in path.read_text().splitlines()
            if line.endswith("}")]


def wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"training ended before the kill point: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the kill point")
        time.sleep(0.01)


def final_agent(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)["agent"]


def kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("extra", [
    pytest.param([], id="plain"),
    pytest.param(["env.normalize_obs=true"], id="normalize_obs"),
    # Each start compiles again (the default of long runs, compile=auto): the same kernels.
    pytest.param(["compile=true"], id="compiled", marks=pytest.mark.slow),
])
def test_sigkill_and_resume_is_bit_identical(tmp_path: Path, extra: list[str]):
    """Killed once before its first checkpoint and once after one, the run ends with the
    weights (with normalize_obs, the observation statistics too) and the metrics.jsonl rows
    of the same run uninterrupted, in one W&B run."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    uninterrupted = start_train(straight, tmp_path, *extra)
    last = killed / "checkpoints" / "last.pt"

    first = start_train(killed, tmp_path, *extra)
    wait_for(lambda: len(logged_steps(killed)) > 0 and not last.exists(), first)
    kill(first)
    assert not last.exists() and logged_steps(killed)  # rows with no checkpoint behind them

    def past_a_checkpoint() -> bool:
        # Kill once a checkpoint exists and rows newer than it have been logged, so that the
        # resume has to drop rows from metrics.jsonl.
        step = checkpoint_step(last)
        return step is not None and step >= 400 and max(logged_steps(killed)) > step

    second = start_train(killed, tmp_path, *extra)
    wait_for(past_a_checkpoint, second)
    kill(second)
    killed_at = checkpoint_step(last)
    assert not (killed / "checkpoints" / "final.pt").exists()
    assert max(logged_steps(killed)) > killed_at  # rows the resume must drop

    third = run_cli("sac-train", *RESUME_ARGS, *extra, f"hydra.run.dir={killed}", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert f"resuming from {last} at step {killed_at}" in third.stderr
    out, err = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, err

    expected, resumed = final_agent(straight), final_agent(killed)
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, resumed[name]), name
    if "env.normalize_obs=true" in extra:  # each collected step's observation, no evaluation's
        assert float(resumed["obs_normalizer.count"]) == 1600

    rows, resumed_rows = read_metrics(straight), read_metrics(killed)
    assert [row["step"] for row in resumed_rows] == [row["step"] for row in rows]
    assert without_wall_clock(resumed_rows) == without_wall_clock(rows)
    assert sum("perf/sps" in row for row in rows) == 3  # logger.every=500 up to 1600

    # W&B: each attempt continued the same run (one offline directory per process, one id).
    run_id = torch.load(killed / "checkpoints" / "final.pt", weights_only=True)["wandb_run_id"]
    offline = sorted(p.name for p in (killed / "wandb").glob("offline-run-*"))
    assert len(offline) == 3 and all(name.endswith(f"-{run_id}") for name in offline), offline
    assert [p.name for p in (killed / "checkpoints").glob("buffer-*.pt")] == ["buffer-1600.pt"]
    assert not list((killed / "checkpoints").glob(".*.tmp"))


@pytest.mark.parametrize(
    ("signum", "code", "resume"),
    [(signal.SIGTERM, 128 + signal.SIGTERM, True), (signal.SIGINT, 128 + signal.SIGINT, False),
     (signal.SIGUSR1, 0, False)],
    ids=["SIGTERM", "SIGINT", "SIGUSR1"],
)
def test_stop_signal_checkpoints_exits_cleanly_and_resumes(tmp_path: Path, signum: int, code: int,
                                                           resume: bool):
    run_dir = tmp_path / "run"
    process = start_train(run_dir, tmp_path, "logger.mode=disabled", "checkpoint.every=100000")
    # Signal in the middle of the learning phase (rows appear every 200 steps).
    wait_for(lambda: max(logged_steps(run_dir), default=0) >= 400, process)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "Traceback" not in err
    name = signal.Signals(signum).name
    stopped = [line for line in err.splitlines() if line.startswith("sac-train: stopped")]
    assert len(stopped) == 1 and name in stopped[0], err
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert 400 <= state["step"] < 1600
    assert f"at step {state['step']};" in stopped[0]
    assert not (run_dir / "checkpoints" / "final.pt").exists()
    # The cut episode is not logged: no row after the checkpoint's step.
    assert max(logged_steps(run_dir)) <= state["step"]
    if not resume:
        return

    again = run_cli("sac-train", *RESUME_ARGS, "logger.mode=disabled", "checkpoint.every=100000",
                    f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"at step {state['step']}" in again.stderr
    final = torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)
    assert final["step"] == 1600
    steps = logged_steps(run_dir)
    assert steps == sorted(steps)
    eval_steps = [r["step"] for r in read_metrics(run_dir) if "eval/return_mean" in r]
    assert eval_steps == [800, 1600]


# --- bad input on resume: in-process calls of the real entry point (seconds, not minutes) ---

QUICK_ARGS = [*RESUME_ARGS[:-1], "total_steps=400", "checkpoint.every=200", "eval.every=400",
              "logger.mode=disabled", "threads=1"]


def call_main(args: list[str]) -> subprocess.CompletedProcess:
    """sac_cli.cli.train.main() as the console script runs it, in this process: argv, exit code,
    stdout and stderr as a subprocess would show them."""
    saved_argv, saved_env, threads = sys.argv, dict(os.environ), torch.get_num_threads()
    os.environ.pop("HYDRA_FULL_ERROR", None)
    sys.argv = ["sac-train", *args]
    out, err, code = io.StringIO(), io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            train.main()
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(threads)  # `threads=1` set it for the whole process
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def error_line(result: subprocess.CompletedProcess) -> str:
    """The single line a failure may print besides log lines ([time][LEVEL] ...)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("sac-train: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    result = call_main([*QUICK_ARGS, f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.fixture
def run_copy(finished: Path, tmp_path: Path) -> Path:
    return copy_run(finished, tmp_path)


def test_a_finished_run_started_again_does_nothing_and_can_be_extended(run_copy: Path):
    before = snapshot(run_copy)
    again = call_main([*QUICK_ARGS, f"hydra.run.dir={run_copy}"])
    assert again.returncode == 0, again.stderr
    assert "already trained 400 steps: nothing to do" in again.stderr
    assert snapshot(run_copy) == before

    longer = call_main([*QUICK_ARGS, "total_steps=600", f"hydra.run.dir={run_copy}"])
    assert longer.returncode == 0, longer.stderr
    assert torch.load(run_copy / "checkpoints" / "final.pt", weights_only=True)["step"] == 600
    assert [r["step"] for r in read_metrics(run_copy) if "eval/return_mean" in r] == [400, 600]


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("network.hidden_sizes=[64,64]", "network.hidden_sizes=[32, 32] (now [64, 64])"),
        ("agent.buffer_size=4000", "agent.buffer_size=5000 (now 4000)"),
        ("env=HalfCheetah-v4", "env.id=Pendulum-v1 (now HalfCheetah-v4)"),
        ("agent=sac_v1", "agent.name=sac (now sac_v1)"),
        ("seed=1", "seed=0 (now 1)"),
    ],
)
def test_resume_with_other_settings_is_refused_and_harms_nothing(run_copy: Path, override: str,
                                                                 named: str):
    before = snapshot(run_copy)
    result = call_main([*QUICK_ARGS, "total_steps=600", override, f"hydra.run.dir={run_copy}"])
    line = error_line(result)
    assert named in line and "new run in another directory" in line
    assert snapshot(run_copy) == before


def test_resume_from_damaged_files_is_one_line_and_harms_nothing(run_copy: Path, tmp_path: Path):
    folder = run_copy / "checkpoints"
    args = [*QUICK_ARGS, "total_steps=600", f"hydra.run.dir={run_copy}"]
    last = (folder / "last.pt").read_bytes()

    (folder / "last.pt").write_bytes(last[: len(last) // 3])
    before = snapshot(run_copy)
    assert "not a readable checkpoint" in error_line(call_main(args))
    assert snapshot(run_copy) == before

    class WritesAFile:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"format": 1, "agent": WritesAFile()}, folder / "last.pt")
    before = snapshot(run_copy)
    assert "refusing to load" in error_line(call_main(args))
    assert not (tmp_path / "pwned").exists()
    assert snapshot(run_copy) == before

    state = torch.load(folder / "final.pt", weights_only=True)
    state["agent"]["actor.net.0.weight"] = torch.zeros(7, 3)  # e.g. a file of older code
    torch.save(state, folder / "last.pt")
    before = snapshot(run_copy)
    line = error_line(call_main(args))
    assert "does not match this configuration (size mismatch for actor.net.0.weight" in line
    assert snapshot(run_copy) == before

    (folder / "last.pt").write_bytes(last)
    (folder / "buffer-400.pt").unlink()
    before = snapshot(run_copy)
    assert "buffer-400.pt does not exist" in error_line(call_main(args))
    assert snapshot(run_copy) == before


def test_unwritable_checkpoint_folder_fails_before_training(tmp_path: Path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoints").write_text("not a folder")
    line = error_line(call_main([*QUICK_ARGS, f"hydra.run.dir={run_dir}"]))
    assert f"cannot write to {run_dir / 'checkpoints'}" in line
    assert (run_dir / "checkpoints").read_text() == "not a folder"
    assert not (run_dir / "metrics.jsonl").exists()


def test_run_directory_under_a_regular_file_is_one_line(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = call_main([*QUICK_ARGS, f"hydra.run.dir={blocker / 'run'}"])
    assert str(blocker) in error_line(result)
