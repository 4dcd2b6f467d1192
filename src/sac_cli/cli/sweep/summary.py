"""The sweep, seen from the command: where and when it started (a Hydra callback), the jobs
that failed, the closing summary, the exit code."""

from __future__ import annotations

import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

from sac_cli.cli.commands import command, quoted
from sac_cli.cli.errors import one_line
from sac_cli.cli.sweep.jobs import JOB_ERROR_FILE, JobFailed
from sac_cli.training.progress import plural
from sac_cli.training.run_dir import HYDRA_DIR

PROG = "sac-train"


@dataclass
class _Sweep:
    dir: Path | None = None
    started: float = 0.0


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


def failed_jobs(sweep: _Sweep) -> list[str]:
    """The first line of each job's error file written during this sweep, by job number."""
    if sweep.dir is None or not sweep.dir.is_dir():
        return []
    lines = []
    for path in sweep.dir.rglob(JOB_ERROR_FILE):
        try:
            if path.stat().st_mtime < sweep.started:
                continue
            line = path.read_text().splitlines()[0]
        except (OSError, IndexError):
            continue
        match = re.match(r"job #(\d+)", line)
        lines.append((int(match.group(1)) if match else -1, line))
    return [line for _, line in sorted(lines)]


def jobs_run(sweep: _Sweep) -> int:
    """Run directories of the sweep that this sweep wrote to (their .hydra/ record)."""
    if sweep.dir is None or not sweep.dir.is_dir():
        return 0
    records = sweep.dir.glob(f"**/{HYDRA_DIR}/config.yaml")
    return sum(1 for path in records if path.stat().st_mtime >= sweep.started)


def report_failures(finished: bool = True) -> bool:
    """One line per failed job; with `finished`, a closing summary: how many jobs ran and
    failed, where the results are, how to plot them."""
    failed = failed_jobs(SWEEP)
    for line in failed:
        print(f"{PROG}: error: {line}", file=sys.stderr)
    if finished and SWEEP.dir is not None:
        ran = max(jobs_run(SWEEP), len(failed))
        done = ran - len(failed)
        outcome = f"{plural(ran, 'job')}: {done} ran to the end, {len(failed)} failed"
        print(
            f"{PROG}: sweep over, {outcome}; results in {quoted(SWEEP.dir)}; plot them: "
            f"{command('sac-plot')} {quoted(SWEEP.dir)}",
            file=sys.stderr,
        )
    return bool(failed)


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
