"""Under submitit: its preemption signal checkpoints the run, then submitit requeues the job."""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from typing import Any

from sac_cli.training.loop import Trainer
from sac_cli.training.signals import STOP, Stopped

log = logging.getLogger(__name__)

# After a SIGTERM under submitit, how long to wait for the preemption signal that SLURM sends
# with it when a job is preempted (without it, the SIGTERM was a plain scancel).
PREEMPT_GRACE_S = 10.0


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
            # stop.what: the resume command in str(stop) would be submitit's own command line
            log.info("%s; handing over to submitit to requeue", stop.what)
    finally:
        signal.signal(preempt, submitit_handler)
    # Calls the launcher's checkpoint() (a resubmission of this same job, hence the same run
    # directory), requeues and exits; it returns only on a worker rank that must not requeue.
    submitit_handler(preempt, None)
    return math.nan
