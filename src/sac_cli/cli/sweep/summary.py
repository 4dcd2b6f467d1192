"""The sweep, seen from the command: where and when it started (a Hydra callback), the jobs
that failed, the closing summary, the exit code."""

from __future__ import annotations

import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

from sac_cli.cli.commands import SWEEP_DIR_KEY, command, quoted, resume_command
from sac_cli.cli.errors import one_line
from sac_cli.cli.sweep.jobs import JOB_ERROR_FILE, JOB_STOPPED_FILE, JobFailed
from sac_cli.training.progress import plural
from sac_cli.training.run_dir import HYDRA_DIR

PROG = "sac-train"
# hydra/launcher=submitit_slurm, slurm and slurm_cpu's launcher.
SLURM_PLUGIN = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


@dataclass
class _Sweep:
    dir: Path | None = None
    started: float = 0.0
    # Jobs of a SLURM sweep that ended without a result: number -> (SLURM id, state, log).
    ended: dict[int, tuple[str, str, str]] = field(default_factory=dict)
    submitted: int = 0  # jobs a SLURM sweep submitted (finished ones included)


SWEEP = _Sweep()


class SweepCallback(Callback):
    """Hydra callback (hydra.callbacks in train.yaml), run where `sac-train -m` runs.

    It names the jobs by what varies across the sweep: the command-line overrides that are the
    same for every job (`env=Hopper-v4 total_steps=...`) join
    hydra.job.config.override_dirname.exclude_keys and the swept ones leave it, so that a run
    directory and a W&B run are called `optimizer.critic_lr=0.001,seed=1`. Jobs are composed
    afresh from the sweep's Hydra overrides, hence the extra Hydra override. It also notes
    where and when the sweep starts, so that main() can find the jobs that failed.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        SWEEP.dir = Path(str(config.hydra.sweep.dir))
        if str(config.hydra.launcher.get("_target_", "")) == SLURM_PLUGIN:
            from sac_cli.cli.sweep.slurm import SlurmLauncher

            # Hydra instantiates a launcher from its registry of the hydra_plugins package's
            # classes: the plugin's name, our subclass (see sweep/slurm.py).
            Plugins.instance().class_name_to_class[SLURM_PLUGIN] = SlurmLauncher
        SWEEP.started = time.time() - 1.0  # file times can be a little coarse
        parser = OverridesParser.create()
        task = parser.parse_overrides([str(o) for o in config.hydra.overrides.task])
        last = {o.key_or_group: o for o in task}  # a key given twice: the last one counts
        swept = {key for key, o in last.items() if o.is_sweep_override()}
        excluded = [str(k) for k in config.hydra.job.config.override_dirname.exclude_keys]
        # A swept key always names the jobs, even one excluded by default (logger.*).
        keys = [k for k in excluded if k not in swept]
        keys += sorted(set(last) - swept - set(keys))
        if keys != excluded:
            with read_write(config.hydra.overrides):
                config.hydra.overrides.hydra.append(
                    f"hydra.job.config.override_dirname.exclude_keys=[{','.join(keys)}]"
                )


def job_notes(sweep: _Sweep, name: str) -> dict[int, str]:
    """The first line of each job's `name` file (error.txt, stopped.txt) written during this
    sweep, by job number."""
    if sweep.dir is None or not sweep.dir.is_dir():
        return {}
    lines = {}
    for path in sweep.dir.rglob(name):
        try:
            if path.stat().st_mtime < sweep.started:
                continue
            line = path.read_text().splitlines()[0]
        except (OSError, IndexError):
            continue
        match = re.match(r"job #(\d+)", line)
        lines[int(match.group(1)) if match else -1 - len(lines)] = line
    return lines


def failed_jobs(sweep: _Sweep) -> list[str]:
    """One line per failed job, by job number: its error.txt, or what SLURM says of a job
    that ended without a result and without saying why."""
    failed = job_notes(sweep, JOB_ERROR_FILE)
    stopped = job_notes(sweep, JOB_STOPPED_FILE)
    for num, (job_id, state, log) in sweep.ended.items():
        if num not in failed and num not in stopped:
            failed[num] = (
                f"job #{num} (SLURM job {job_id}) ended {state} without a result; its log: {log}"
            )
    return [failed[num] for num in sorted(failed)]


def stopped_jobs(sweep: _Sweep) -> list[str]:
    """Jobs of a SLURM sweep stopped by a signal, checkpoint saved, that SLURM did not requeue."""
    stopped = job_notes(sweep, JOB_STOPPED_FILE)
    return [stopped[num] for num in sorted(stopped)]


def jobs_run(sweep: _Sweep) -> int:
    """Run directories of the sweep that this sweep wrote to (their .hydra/ record)."""
    if sweep.dir is None or not sweep.dir.is_dir():
        return 0
    records = sweep.dir.glob(f"**/{HYDRA_DIR}/config.yaml")
    return sum(1 for path in records if path.stat().st_mtime >= sweep.started)


def report_failures(finished: bool = True) -> bool:
    """One line per failed or stopped job; with `finished`, a closing summary: how many jobs
    ran, where the results are, how to plot them. True when a job did not run to the end."""
    failed, stopped = failed_jobs(SWEEP), stopped_jobs(SWEEP)
    for line in failed:
        print(f"{PROG}: error: {line}", file=sys.stderr)
    for line in stopped:
        print(f"{PROG}: {line}; not requeued", file=sys.stderr)
    if stopped and SWEEP.dir is not None:
        print(f"{PROG}: to go on: {resume_command(SWEEP.dir, SWEEP_DIR_KEY)}", file=sys.stderr)
    if finished and SWEEP.dir is not None:
        ran = max(jobs_run(SWEEP), len(failed) + len(stopped), SWEEP.submitted)
        print(
            f"{PROG}: sweep over, {outcome(ran, len(failed), len(stopped))}; results in "
            f"{quoted(SWEEP.dir)}; plot them: {command('sac-plot')} {quoted(SWEEP.dir)}",
            file=sys.stderr,
        )
    return bool(failed or stopped)


def outcome(ran: int, failed: int, stopped: int) -> str:
    """`3 jobs: 1 ran to the end, 1 failed, 1 stopped (resumable)`, zeros left out."""
    done = ran - failed - stopped
    if done == ran:
        return f"{plural(ran, 'job')}, all ran to the end" if ran != 1 else "1 job, ran to the end"
    parts = [(done, "ran to the end"), (failed, "failed"), (stopped, "stopped (resumable)")]
    return f"{plural(ran, 'job')}: " + ", ".join(f"{n} {what}" for n, what in parts if n)


def exit_code(signum: int) -> int:
    return 128 + signum if signum != signal.SIGUSR1 else 0


def report_sweep_error(error: Exception) -> None:
    """A sweeper or launcher stopped the sweep (an Optuna study past its max_failure_rate,
    submitit that cannot reach SLURM): the failed jobs, then why the sweep stopped."""
    report_failures(finished=False)
    if isinstance(error, JobFailed):
        reason = "the sweep stopped at a failed job (hydra.sweeper.max_failure_rate)"
    else:
        reason = one_line(error)
    print(f"{PROG}: error: {reason}", file=sys.stderr)
