"""`sac-train -m hydra/launcher=slurm_cpu` on a real single-node SLURM (conftest.py): a sweep
to the end, a failed job as SLURM's accounting sees it, and a job stopped by each of SLURM's
ways (submitit's USR2, a time limit, `scontrol requeue`'s SIGTERM, scancel) that resumes
from its checkpoint with every metrics row once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.cli import TINY, cli_env
from slow_env import STEP_S

pytestmark = pytest.mark.slurm

SWEEPS: list[Sweep] = []  # started by the current test
FAST = [arg for arg in TINY if not arg.startswith(("total_steps=", "checkpoint.every="))]


def job_env(slurm) -> dict[str, str]:
    """sac-train's environment, passed on to its jobs: SLURM_CONF, and slow_env importable."""
    env = {**cli_env(), **slurm.env}
    env["PYTHONPATH"] = os.pathsep.join((str(Path(__file__).parent), env["PYTHONPATH"]))
    return env


@pytest.fixture(autouse=True)
def _no_leftovers(slurm):
    """After each test, whatever happened: no sac-train left running, no job left queued."""
    yield
    while SWEEPS:
        process = SWEEPS.pop().process
        if process.poll() is None:
            process.kill()
            process.wait()
    slurm.cancel_all()


class Sweep:
    """`sac-train -m` with the slurm_cpu preset, one core and 1 GB a job, run in the
    background with its stderr in a file."""

    def __init__(self, slurm, tmp_path: Path, *args: str, name: str = "sweep") -> None:
        self.slurm, self.dir, self.err = slurm, tmp_path / name, tmp_path / f"{name}.err"
        self.args = [
            "-m", "hydra/launcher=slurm_cpu", "hydra.launcher.partition=cpu",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "threads=1",
            *args, f"hydra.sweep.dir={self.dir}",
        ]  # fmt: skip
        self.started = time.monotonic()
        with self.err.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sac_cli.cli.train", *self.args],
                cwd=tmp_path, env=job_env(slurm), stdout=err, stderr=err, text=True,
            )  # fmt: skip
        SWEEPS.append(self)

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    def job_id(self, num: int) -> str:
        found = self.wait_for(lambda: re.search(rf"job #{num}: SLURM job (\S+):", self.stderr))
        return found.group(1)

    def wait_for(self, condition, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            assert self.process.poll() is None, self.stderr
            assert time.monotonic() < deadline, self.stderr
            time.sleep(0.2)
        return value

    def finish(self, timeout: float = 400) -> int:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"sac-train runs past {timeout} s:\n{self.stderr}") from None
        print(f"{self.dir.name}: {time.monotonic() - self.started:.0f} s, sac-train {self.args}")
        return self.process.returncode

    def sacct(self, job_id: str) -> str:
        """`State ExitCode` of the job's last run, as SLURM's accounting has it."""
        out = self.slurm.run("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State,ExitCode")
        return out.strip().splitlines()[-1].replace("|", " ")

    def job_log(self, job_id: str) -> str:
        return "".join(p.read_text() for p in sorted(self.dir.glob(f".submitit/{job_id}/*_log.*")))


def steps_logged(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [row["step"] for row in map(json.loads, lines) if "perf/sps" in row]


def has_checkpoint(run_dir: Path, rows: int = 5) -> bool:
    metrics = run_dir / "metrics.jsonl"
    last = run_dir / "checkpoints" / "last.pt"
    return last.exists() and metrics.exists() and metrics.read_text().count("perf/sps") >= rows


def test_two_job_sweep_runs_to_the_end_and_says_where(slurm, tmp_path: Path):
    sweep = Sweep(slurm, tmp_path, *TINY, "logger.mode=offline", "seed=0,1")
    assert sweep.finish() == 0, sweep.stderr
    err = sweep.stderr
    assert "sweep over, 2 jobs, all ran to the end; results in sweep" in err
    for num in (0, 1):
        job = sweep.job_id(num)
        assert f"SLURM job {job}: COMPLETED" in err
        assert sweep.sacct(job) == "COMPLETED 0:0"
        assert steps_logged(sweep.dir / f"seed={num}") == list(range(100, 601, 100))
        # submitit's own lines once, in the .out log, not again in the .err one
        log = sweep.job_log(job)
        assert log.count("Job completed successfully") == 1, log
    assert "their logs: sweep/.submitit/<job id>/<job id>_0_log.out and .err" in err


def test_a_failed_job_is_failed_in_sacct_and_in_the_summary(slurm, tmp_path: Path):
    bad_env = "env.id=Pendulum-v1,NoSuchEnv-v0"
    sweep = Sweep(slurm, tmp_path, *TINY, "logger.mode=disabled", bad_env)
    assert sweep.finish() == 1, sweep.stderr
    err = sweep.stderr
    good, bad = sweep.job_id(0), sweep.job_id(1)
    assert sweep.sacct(good) == "COMPLETED 0:0"
    assert sweep.sacct(bad) == "FAILED 1:0"
    assert "error: job #1 (env.id=NoSuchEnv-v0,seed=0) failed: unknown environment" in err
    assert "sweep over, 2 jobs: 1 ran to the end, 1 failed;" in err
    assert "Traceback" not in err


def test_all_jobs_failed_says_so(slurm, tmp_path: Path):
    sweep = Sweep(slurm, tmp_path, *TINY, "logger.mode=disabled", "env.id=NoSuchEnv-v0,Nope-v1")
    assert sweep.finish() == 1, sweep.stderr
    assert "sweep over, 2 jobs: 2 failed;" in sweep.stderr
    assert "ran to the end" not in sweep.stderr


@pytest.mark.parametrize(
    "how", ["scancel --signal=USR2", "scontrol requeue"], ids=["usr2-preemption", "sigterm-requeue"]
)
def test_a_job_stopped_by_slurm_resumes_from_its_checkpoint(slurm, tmp_path: Path, how: str):
    """Submitit's preemption signal, or the SIGTERM of `scontrol requeue` (as a preemption
    without GraceTime sends): the job checkpoints, runs again and resumes; the sweep waits
    for it and tells the truth. W&B (offline) loses its service process to the SIGTERM."""
    total = 6000
    sweep = Sweep(slurm, tmp_path, *FAST, f"total_steps={total}", "checkpoint.every=500",
                  "eval.every=3000", "logger.mode=offline", "seed=0")  # fmt: skip
    job = sweep.job_id(0)
    run_dir = sweep.dir / "seed=0"
    sweep.wait_for(lambda: has_checkpoint(run_dir))
    slurm.run(*how.split(), job)
    assert sweep.finish() == 0, sweep.stderr
    err, log = sweep.stderr, sweep.job_log(job)
    signame = "SIGUSR2" if "USR2" in how else "SIGTERM"
    stopped_at = int(re.search(rf"stopped by {signame} at step (\d+)", log).group(1))
    assert 0 < stopped_at < total
    assert f"resuming from {run_dir}/checkpoints/last.pt at step {stopped_at}" in log
    assert steps_logged(run_dir) == list(range(100, total + 1, 100))
    assert f"SLURM job {job}: PENDING" in err.split(f"SLURM job {job}: RUNNING", 1)[1]
    assert "sweep over, 1 job, ran to the end" in err and "error" not in err
    assert sweep.sacct(job) == "COMPLETED 0:0"
    assert not (run_dir / "stopped.txt").exists() and not (run_dir / "error.txt").exists()


def test_a_job_past_its_time_limit_is_requeued_and_resumes(slurm, tmp_path: Path):
    """timeout_min=2, signal_delay_s=60: USR2 about a minute in (SLURM may send it up to 30 s
    early); the job checkpoints, is requeued as timed out, and resumes. SlowPendulum makes
    the run last over a minute even on a fast machine."""
    total = 3200
    assert total * STEP_S > 61
    sweep = Sweep(slurm, tmp_path, *FAST, f"total_steps={total}", "checkpoint.every=400",
                  "eval.every=1600", "logger.mode=disabled", "seed=0",
                  "env.id=slow_env:SlowPendulum-v0",
                  "hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=60")  # fmt: skip
    assert sweep.finish(timeout=500) == 0, sweep.stderr
    job, run_dir = sweep.job_id(0), next(sweep.dir.glob("*seed=0*"))
    log = sweep.job_log(job)
    assert "this job is timed-out" in log
    assert "resuming from" in log
    assert steps_logged(run_dir) == list(range(100, total + 1, 100))
    assert "sweep over, 1 job, ran to the end" in sweep.stderr


def test_a_job_killed_without_a_signal_is_failed_with_its_slurm_state(slurm, tmp_path: Path):
    """SIGKILL to the job's process (as the out-of-memory killer sends): no result; the sweep
    reports the job failed with SLURM's state and its log."""
    sweep = Sweep(slurm, tmp_path, *FAST, "total_steps=20000", "checkpoint.every=500",
                  "logger.mode=disabled", "seed=0")  # fmt: skip
    job = sweep.job_id(0)
    sweep.wait_for(lambda: has_checkpoint(sweep.dir / "seed=0"))
    (pid,) = job_pids(sweep.dir)
    os.kill(pid, signal.SIGKILL)
    assert sweep.finish() == 1, sweep.stderr
    state = sweep.sacct(job)
    assert state.startswith("FAILED") and state != "FAILED 0:0", state
    line = f"error: job #0 (SLURM job {job}) ended FAILED without a result; its log: "
    assert line in sweep.stderr
    assert "sweep over, 1 job: 1 failed;" in sweep.stderr


def job_pids(sweep_dir: Path) -> list[int]:
    """The sweep's job processes (submitit's runner, not the srun that starts it), from /proc."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"srun") or b"submitit.core._submit" not in argv:
            continue
        if any(str(sweep_dir).encode() in a for a in argv):
            pids.append(int(proc.name))
    return pids


def test_a_cancelled_job_is_reported_stopped_and_resumes_on_the_next_run(slurm, tmp_path: Path):
    """scancel: SIGTERM and no requeue. The job is stopped, not failed; the sweep exits 1
    and says how to go on; that command resumes it to the end."""
    total = 6000
    args = [*FAST, f"total_steps={total}", "checkpoint.every=500", "eval.every=3000",
            "logger.mode=disabled", "seed=0,1"]  # fmt: skip
    sweep = Sweep(slurm, tmp_path, *args)
    job = sweep.job_id(0)
    sweep.wait_for(lambda: has_checkpoint(sweep.dir / "seed=0"))
    slurm.run("scancel", job)
    assert sweep.finish() == 1, sweep.stderr
    err = sweep.stderr
    assert "sac-train: job #0 (seed=0) stopped by SIGTERM at step" in err
    assert "checkpoint saved" in err and "; not requeued" in err
    assert "sweep over, 2 jobs: 1 ran to the end, 1 stopped (resumable);" in err
    assert "error" not in err
    assert sweep.sacct(job).startswith("CANCELLED")
    assert "to go on: " in err and f"hydra.sweep.dir={sweep.dir.name}" in err

    again = Sweep(slurm, tmp_path, *args)
    assert again.finish() == 0, again.stderr
    assert "sweep over, 2 jobs, all ran to the end" in again.stderr
    assert steps_logged(sweep.dir / "seed=0") == list(range(100, total + 1, 100))


def test_jobs_that_cannot_be_scheduled_are_named_with_what_to_change(slurm, tmp_path: Path):
    """More cores than the node has: the job pends with a reason that waiting will not
    resolve; sac-train says so and what to change, and Ctrl-C leaves the job queued. More
    memory than the node has: sbatch refuses the sweep, in one line."""
    cpus = (os.cpu_count() or 1) + 1
    sweep = Sweep(slurm, tmp_path, *TINY, "logger.mode=disabled", "seed=0",
                  f"hydra.launcher.cpus_per_task={cpus}")  # fmt: skip
    job = sweep.job_id(0)
    sweep.wait_for(lambda: "which waiting will not resolve" in sweep.stderr, timeout=60)
    sweep.process.send_signal(signal.SIGINT)
    assert sweep.finish(timeout=30) == 130, sweep.stderr
    err = sweep.stderr
    assert f"SLURM job {job} pends with Reason=PartitionConfig" in err
    assert f"it asks for {cpus} CPU(s), 1 GB" in err and "hydra.launcher.cpus_per_task" in err
    assert f"stopped waiting (SIGINT); the sweep's jobs stay in SLURM: `squeue -j {job}`" in err
    assert slurm.run("squeue", "-h", "-j", job, "-o", "%T").strip() == "PENDING"
    slurm.run("scancel", job)

    refused = Sweep(slurm, tmp_path, *TINY, "seed=0", "hydra.launcher.mem_gb=100000", name="mem")
    assert refused.finish(timeout=60) == 1, refused.stderr
    assert "Requested node configuration is not available" in refused.stderr
    assert "Traceback" not in refused.stderr
