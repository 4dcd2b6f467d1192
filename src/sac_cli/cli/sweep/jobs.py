"""One job of a sweep: an exception fails that job only; a stop signal stops the sweep."""

from __future__ import annotations

import logging
import math
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from sac_cli.cli.commands import SWEEP_DIR_KEY, resume_command
from sac_cli.cli.errors import one_line
from sac_cli.cli.sweep.context import job_label
from sac_cli.cli.sweep.requeue import submitit_preempt_signal
from sac_cli.errors import UserError
from sac_cli.files import atomic_write_text
from sac_cli.training.signals import Stopped

log = logging.getLogger(__name__)

JOB_ERROR_FILE = "error.txt"
# A job of a SLURM sweep stopped by a signal other than submitit's (a SIGTERM from scancel,
# `scontrol requeue`, a preemption without GraceTime): its checkpoint is saved and SLURM may
# requeue it; `sac-train -m` reports it as stopped, not failed, if SLURM does not.
JOB_STOPPED_FILE = "stopped.txt"


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
    stopped_file = error_file.with_name(JOB_STOPPED_FILE)
    error_file.unlink(missing_ok=True)  # from an earlier attempt of this sweep
    stopped_file.unlink(missing_ok=True)
    on_slurm = os.environ.get("SUBMITIT_EXECUTOR") == "slurm"
    optuna = is_optuna(hydra_cfg.sweeper)
    try:
        if optuna and cfg.eval.episodes <= 0:
            raise UserError("an Optuna trial's objective is its last evaluation: eval.episodes > 0")
        return train(cfg)
    except Stopped as stop:
        if submitit_preempt_signal() is None:
            raise SweepStopped(label, stop, str(hydra_cfg.sweep.dir)) from stop
        if on_slurm:
            # No result for submitit: the sweep waits while SLURM has the job queued again.
            line = f"{label} {stop.what}"
            log.warning(line)
            atomic_write_text(line + "\n", stopped_file)
            raise SystemExit(128 + stop.signum) from None
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
    if on_slurm:
        # A non-zero exit, so that SLURM's accounting shows the job FAILED; the sweep (our
        # launcher, slurm.py) counts a job without a result as failed and goes on.
        raise SystemExit(1)
    # NaN, not an exception: the sweep goes on with the other jobs, and main() reports the
    # failed ones once it is over.
    return math.nan
