"""The benchmark's runs: one per (implementation, environment, seed), each a subprocess with
its output in its run directory (benchmark.log, benchmark.json)."""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from sac_cli.errors import UserError
from sac_cli.files import atomic_write_text
from sac_cli.reporting import metrics

PROG = "benchmarks/learning.py"
METRIC = "eval/return_mean"
IMPLS = ("sac-cli", "sb3")
IMPL_LABELS = {"sac-cli": "sac-cli", "sb3": "Stable-Baselines3 SAC"}
# Keys our runs always get from this script; --set may not change them.
FIXED_KEYS = (
    "env",
    "env.id",
    "seed",
    "total_steps",
    "eval.every",
    "eval.episodes",
    "logger.mode",
    "threads",
    "hydra.run.dir",
    "device",
)


# Runs its arguments as a command on the cores named by the first one (Linux only).
_PIN = (
    "import os, sys; os.sched_setaffinity(0, map(int, sys.argv[1].split(','))); "
    "os.execvp(sys.argv[2], sys.argv[2:])"
)


def core_slots(jobs: int) -> list[tuple[int, ...]]:
    """This process's cores split into `jobs` disjoint sets, one per run at a time, so that
    runs side by side do not oversubscribe the cores: a run on one core uses one thread, a
    run on two or more its critic and policy branches (training/update.py). Empty where the
    OS cannot pin, or where there are fewer cores than jobs (then the runs share them all)."""
    if not hasattr(os, "sched_setaffinity"):
        return []
    cores = sorted(os.sched_getaffinity(0))
    if jobs > len(cores):
        return []
    per_job = len(cores) // jobs
    return [tuple(cores[i * per_job : (i + 1) * per_job]) for i in range(jobs)]


def pinned(cmd: list[str], cores: tuple[int, ...]) -> list[str]:
    """`cmd` run on `cores` only (sched_setaffinity, then exec: the command's own process)."""
    return [sys.executable, "-c", _PIN, ",".join(map(str, cores)), *cmd]


def say(line: str) -> None:
    """One line of progress, written in one call: runs side by side (threads) report without
    their lines running into each other."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Job:
    impl: str
    env_id: str
    seed: int
    run_dir: Path


def sac_train_command() -> list[str]:
    exe = shutil.which("sac-train", path=os.path.dirname(sys.executable)) or shutil.which(
        "sac-train"
    )
    if exe is None:
        raise UserError("sac-train is not on PATH: pip install -e . in this environment first")
    return [exe]


def our_overrides(args: argparse.Namespace, env_id: str, seed: int) -> list[str]:
    return [
        f"env={env_id}",
        f"seed={seed}",
        f"total_steps={args.steps}",
        f"eval.every={args.eval_every}",
        f"eval.episodes={args.eval_episodes}",
        "logger.mode=disabled",
        "threads=1",
        "device=cpu",
        *args.set,
    ]


def composed_config(args: argparse.Namespace, env_id: str) -> dict:
    """sac-cli's config for this env with the benchmark's overrides, as sac-train composes it."""
    cmd = [*sac_train_command(), *our_overrides(args, env_id, 0), "--cfg", "job", "--resolve"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["sac-train failed"])[-1]
        raise UserError(f"cannot compose sac-cli's config for {env_id}: {last}")
    return yaml.safe_load(proc.stdout)


def final_step_done(run_dir: Path, steps: int) -> bool:
    path = run_dir / metrics.METRICS_FILE
    if not path.is_file():
        return False
    return any(row["step"] == steps and METRIC in row for _, _, row in metrics.rows(path))


def write_sb3_run_files(job: Job, args: argparse.Namespace, hp: dict) -> None:
    import stable_baselines3

    hydra_dir = job.run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "impl": "sb3",
        "sb3_version": stable_baselines3.__version__,
        "env": {"id": job.env_id},
        "seed": job.seed,
        "total_steps": args.steps,
        "eval": {"every": args.eval_every, "episodes": args.eval_episodes},
        "sb3": hp,
    }
    atomic_write_text(yaml.safe_dump(config, sort_keys=False), hydra_dir / "config.yaml")
    overrides = yaml.safe_dump(["impl=sb3", f"seed={job.seed}"])
    atomic_write_text(overrides, hydra_dir / "overrides.yaml")


def run_job(
    job: Job, args: argparse.Namespace, hp: dict | None, cores: tuple[int, ...] = ()
) -> tuple[Job, int, float]:
    """Run one job as a subprocess with its output in run_dir/benchmark.log, on `cores` only
    when given."""
    if final_step_done(job.run_dir, args.steps):
        say(f"[skip] {job.impl} {job.env_id} seed={job.seed}: already complete")
        return job, 0, 0.0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if job.impl == "sac-cli":
        cmd = [
            *sac_train_command(),
            *our_overrides(args, job.env_id, job.seed),
            # Quoted: the seed=N in the path would otherwise read as a second `=`.
            f"hydra.run.dir='{job.run_dir.resolve()}'",
        ]
        job.run_dir.mkdir(parents=True, exist_ok=True)
    else:
        shutil.rmtree(job.run_dir, ignore_errors=True)
        write_sb3_run_files(job, args, hp)
        spec = {
            "env_id": job.env_id,
            "seed": job.seed,
            "steps": args.steps,
            "eval_every": args.eval_every,
            "eval_episodes": args.eval_episodes,
            "run_dir": str(job.run_dir),
            "hyperparameters": hp,
        }
        cmd = [sys.executable, "-m", "sac_cli.cli.learning", "--sb3-worker", json.dumps(spec)]
    on = f" (cores {','.join(map(str, cores))})" if cores else ""
    say(f"[start] {job.impl} {job.env_id} seed={job.seed}{on}: {' '.join(cmd)}")
    start = time.perf_counter()
    with (job.run_dir / "benchmark.log").open("w") as log:
        rc = subprocess.run(
            pinned(cmd, cores) if cores else cmd, stdout=log, stderr=subprocess.STDOUT, env=env
        ).returncode
    elapsed = time.perf_counter() - start
    record = {"command": cmd, "cores": list(cores) or None, "returncode": rc, "wall_s": elapsed}
    atomic_write_text(
        json.dumps(record) + "\n",
        job.run_dir / "benchmark.json",
    )
    status = "done" if rc == 0 else f"FAILED (exit {rc}, see {job.run_dir / 'benchmark.log'})"
    say(f"[{status}] {job.impl} {job.env_id} seed={job.seed} in {elapsed:.0f} s")
    return job, rc, elapsed


def run_jobs(
    jobs: list[Job], args: argparse.Namespace, hps: dict[str, dict | None]
) -> list[tuple[Job, int, float]]:
    """Every job, args.jobs at a time, each on its own cores where they can be pinned."""
    slots = core_slots(args.jobs)
    free: queue.Queue[tuple[int, ...]] = queue.Queue()
    for cores in slots:
        free.put(cores)

    def run_on_free_cores(job: Job) -> tuple[Job, int, float]:
        if not slots:
            return run_job(job, args, hps[job.env_id])
        cores = free.get()
        try:
            return run_job(job, args, hps[job.env_id], cores)
        finally:
            free.put(cores)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        return list(pool.map(run_on_free_cores, jobs))
