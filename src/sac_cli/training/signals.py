"""Stop signals: SIGTERM, SIGINT and SIGUSR1 ask for a checkpoint and a clean stop.

One process-wide record (STOP) notes the signal; the training loop looks at it at the end of
every step. The entry points install its handlers first thing, so a signal that comes during
start-up (imports, composing the config, building the environment) is not lost: training
then stops before its first step, with nothing trained or saved.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

from sac_cli.cli.commands import resume_command

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Stopped(BaseException):
    """Training stopped by a signal (after writing a checkpoint, when `path` is given). Not an
    Exception: it is no failure of the job, and it passes Hydra's job runner untouched."""

    def __init__(self, signum: int, step: int, path: Path | None, run_dir: Path) -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        if path is None:
            self.what = f"stopped by {name} during start-up, before training: nothing saved"
            super().__init__(self.what)
        else:
            self.what = f"stopped by {name} at step {step}; checkpoint saved to {path}"
            super().__init__(f"{self.what}; to resume: {resume_command(run_dir)}")


class StopRequest:
    """The stop signal received so far in this process, if any."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def request(self, signum: int) -> None:
        self.signum = signum

    def _handle(self, signum: int, frame) -> None:
        # A second Ctrl-C does not wait for the checkpoint (the last one stays intact).
        if signum == signal.SIGINT and self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def install(self) -> None:
        """Route the stop signals here (signal handlers live in the main thread only)."""
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._handle)

    @contextlib.contextmanager
    def installed(self):
        """install() for the duration of a run, restoring the previous handlers after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        self.install()
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def raise_if_requested(self, run_dir: Path) -> None:
        """Before training has written anything: stop now, with nothing to save."""
        if self.signum is not None:
            raise Stopped(self.signum, 0, None, run_dir)


STOP = StopRequest()
