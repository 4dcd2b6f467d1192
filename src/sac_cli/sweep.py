"""What `sac-train -m` adds to a single run: job names, shared cores, failure isolation,
requeue under submitit, and the failed jobs reported once the sweep is over.

In a multirun each job gets:
- a run directory named from its overrides (`hydra.sweep.subdir`, made safe by `job_dirname`);
- a W&B group (the sweep directory) and run name (the job's overrides) when logger.group and
  logger.name are null;
- a torch thread count that shares the cores between the jobs running at once;
- failure isolation: an exception ends that job only; it is written to `<run dir>/error.txt`,
  the job returns NaN (under Optuna it raises JobFailed: a failed trial), and when the sweep
  is over `sac-train` prints one line per failed job and exits 1. A stop signal (Ctrl-C,
  SIGTERM, SIGUSR1) stops the whole sweep instead;
- under submitit (hydra/launcher=submitit_slurm, submitit_local, slurm), submitit's preemption
  signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise) first writes a checkpoint at the
  end of the current step; submitit then requeues the job, which resumes from it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, read_write
from omegaconf.errors import OmegaConfBaseException

from sac_cli.cli import one_line
from sac_cli.commands import SWEEP_DIR_KEY, command, quoted, resume_command
from sac_cli.config import TrainConfig
from sac_cli.device import usable_cpus
from sac_cli.errors import UserError
from sac_cli.files import atomic_write_text
from sac_cli.progress import plural
from sac_cli.run_dir import HYDRA_DIR
from sac_cli.signals import STOP, Stopped
from sac_cli.trainer import Trainer

log = logging.getLogger(__name__)

PROG = "sac-train"

JOB_ERROR_FILE = "error.txt"
# Longest run directory name kept as is; longer ones are cut and end in a hash of the whole.
MAX_DIRNAME = 120
# W&B limits a group name to 128 characters.
MAX_GROUP = 128
# After a SIGTERM under submitit, how long to wait for the preemption signal that SLURM sends
# with it when a job is preempted (without it, the SIGTERM was a plain scancel).
PREEMPT_GRACE_S = 10.0


def job_name(override_dirname: str, seed: Any) -> str:
    """What sets a job apart in its sweep, `optimizer.critic_lr=0.001,seed=1`: its overrides
    (hydra.job.override_dirname) with the seed, added when the sweep does not set it. The
    W&B run name and, made safe by job_dirname, the run directory's name."""
    if re.search(r"(^|,)seed=", override_dirname):
        return override_dirname
    return f"{override_dirname},seed={seed}" if override_dirname else f"seed={seed}"


def job_dirname(override_dirname: str, seed: Any) -> str:
    """`hydra.sweep.subdir`: job_name as a directory name. Long floats (Optuna's samples) are
    cut to 4 significant digits and characters other than letters, digits and `._-+=,[]`
    become `_`; a name changed that way, or longer than MAX_DIRNAME, ends in a hash of the
    original, so that two jobs never share a directory."""
    name = job_name(override_dirname, seed)
    short = _FLOAT.sub(lambda m: f"{float(m[0]):.4g}" if len(m[0]) > 8 else m[0], name)
    safe = re.sub(r"[^\w.\-+=,\[\]]", "_", short, flags=re.ASCII)
    if safe == name and len(safe) <= MAX_DIRNAME:
        return safe
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{safe[:MAX_DIRNAME]}-{digest}"


# A float value in an override list: after `=`, `,` or `[`, up to `,`, `]` or the end.
_FLOAT = re.compile(r"(?<=[=,\[])-?(?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][-+]?\d+)?(?=[,\]]|$)")


OmegaConf.register_new_resolver("sac_job_dir", job_dirname, replace=True)


# --- sweeps: what a job learns from Hydra's config ----------------------------------------


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_group(sweep_dir: str) -> str:
    """The W&B group of a sweep: its directory, relative to the working directory if inside."""
    path = Path(sweep_dir)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())
    group = path.as_posix()
    return group if len(group) <= MAX_GROUP else group[-MAX_GROUP:]


def threads_per_job(launcher: Any, cpus: int) -> int | None:
    """torch threads for one job of a sweep, from the launcher's config; None keeps torch's
    default (the job has the machine, or its SLURM allocation, to itself)."""
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs", -1))
        # joblib's own rule: a negative n_jobs counts back from the number of cores.
        parallel = max(1, cpus + 1 + n_jobs if n_jobs < 0 else n_jobs)
        return max(1, cpus // parallel) if parallel > 1 else None
    if "submitit" in target:
        per_task = launcher.get("cpus_per_task")
        if per_task:
            return int(per_task)
        # submitit_local starts every job of the sweep at once, whatever their number; a
        # SLURM job is confined to its allocation (torch sees it through the CPU affinity).
        return 1 if target.endswith("LocalLauncher") else None
    return None  # the basic launcher runs one job at a time


def job_threads() -> int | None:
    """torch threads for this job when `threads` is null (None: torch's default)."""
    if not is_multirun():
        return None
    return threads_per_job(HydraConfig.get().launcher, usable_cpus())


def job_label(hydra_cfg: Any, seed: Any) -> str:
    return f"job #{hydra_cfg.job.num} ({job_name(str(hydra_cfg.job.override_dirname), seed)})"


def name_wandb_run(config: TrainConfig, config_dict: dict[str, Any]) -> None:
    """In a sweep, null logger.group/name become the sweep directory and the job's name; filled
    into this job's copies only, so .hydra/config.yaml keeps the user's null."""
    hydra_cfg = HydraConfig.get()
    if config.logger.group is None:
        config.logger.group = sweep_group(str(hydra_cfg.sweep.dir))
    if config.logger.name is None:
        config.logger.name = job_name(str(hydra_cfg.job.override_dirname), config.seed)
    config_dict["logger"]["group"] = config.logger.group
    config_dict["logger"]["name"] = config.logger.name


# --- submitit: checkpoint, then requeue ---------------------------------------------------


def submitit_preempt_signal() -> signal.Signals | None:
    """The signal by which submitit announces preemption or timeout, when this job runs under
    submitit in the main thread (where signal handlers live); None otherwise."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    # submitit's own rule (JobEnvironment.USR_SIG).
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, f"SIG{name}", None)


def run_requeueable(trainer: Trainer, preempt: signal.Signals) -> float:
    """Run under submitit: its preemption signal stops training with a checkpoint at the end
    of the current step, then submitit's own handler requeues the job (and exits). SLURM sends
    SIGTERM along with that signal on preemption; a SIGTERM alone (scancel) is a plain stop.
    """
    received: list[int] = []

    def on_preempt(signum: int, frame: Any) -> None:
        received.append(signum)
        STOP.request(signum)

    submitit_handler = signal.signal(preempt, on_preempt)
    try:
        try:
            return trainer.run()
        except Stopped as stop:
            if stop.signum == signal.SIGTERM:
                deadline = time.monotonic() + PREEMPT_GRACE_S
                while not received and time.monotonic() < deadline:
                    time.sleep(0.1)
            if not received or not callable(submitit_handler):
                raise
            log.info("%s; handing over to submitit to requeue", stop)
    finally:
        signal.signal(preempt, submitit_handler)
    # Calls the launcher's checkpoint() (a resubmission of this same job, hence the same run
    # directory), requeues and exits; it returns only on a worker rank that must not requeue.
    submitit_handler(preempt, None)
    return math.nan


class SweepStopped(BaseException):
    """A job of a sweep stopped by a signal: stop the sweep too. A BaseException, so that
    Hydra's launcher does not record it as one more failed job and go on with the next."""

    def __init__(self, label: str, stop: Stopped, sweep_dir: str) -> None:
        self.signum = stop.signum
        super().__init__(
            f"{label} {stop.what}; the sweep stopped there; to go on: "
            f"{resume_command(Path(sweep_dir), SWEEP_DIR_KEY)}"
        )


class JobFailed(Exception):
    """A failed job of an Optuna study, raised so that the study records a failed trial."""


def is_optuna(sweeper: Any) -> bool:
    return "optuna" in str(sweeper.get("_target_", ""))


def run_job(cfg: DictConfig, train: Callable[[DictConfig], float]) -> float:
    """One job of a sweep: an exception fails this job only (see the module docstring)."""
    hydra_cfg = HydraConfig.get()
    label = job_label(hydra_cfg, cfg.seed)
    error_file = Path(hydra_cfg.runtime.output_dir) / JOB_ERROR_FILE
    error_file.unlink(missing_ok=True)  # from an earlier attempt of this sweep
    optuna = is_optuna(hydra_cfg.sweeper)
    try:
        if optuna and cfg.eval.episodes <= 0:
            raise UserError("an Optuna trial's objective is its last evaluation: eval.episodes > 0")
        return train(cfg)
    except Stopped as stop:
        if submitit_preempt_signal() is None:
            raise SweepStopped(label, stop, str(hydra_cfg.sweep.dir)) from stop
        message, details = str(stop), ""
    except (UserError, HydraException, OmegaConfBaseException) as error:
        message, details = one_line(error), ""
    except Exception as error:
        first = str(error).strip().splitlines()
        message = f"{type(error).__name__}: {first[0]}" if first else type(error).__name__
        details = traceback.format_exc()
        message += f" (traceback in {error_file})"
    line = f"{label} failed: {message}"
    log.error(line)
    atomic_write_text(f"{line}\n{details}", error_file)
    if optuna:
        # The study records a failed trial and goes on up to hydra.sweeper.max_failure_rate;
        # it cannot take NaN for an answer (hydra-optuna-sweeper 1.3 then stops with an error).
        raise JobFailed(line)
    # NaN, not an exception: the sweep goes on with the other jobs, and main() reports the
    # failed ones once it is over.
    return math.nan


# --- the sweep, seen from the command ----------------------------------------------------


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
