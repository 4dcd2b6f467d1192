"""Atomic file writes, the one way sac-cli writes a file that must survive a kill: a
temporary file in the same folder, fsync, rename over the target, fsync of the folder. A kill
at any instant leaves the old file or the new one, never a torn one; a failed write (a
read-only folder, a full disk) is one UserError and leaves the old file as it was. Imports
no torch: sac-plot uses it too."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from sac_cli.errors import UserError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


def atomic_write_text(text: str, path: Path) -> None:
    """A small text file (sac-eval's results, the W&B run id), written like a checkpoint."""
    atomic_write(path, "w", lambda handle: handle.write(text))


def atomic_write(path: Path, mode: str, write: Callable[[IO], object]) -> None:
    """Temporary file in the same folder, fsync, rename over `path`, fsync the folder."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        # mkstemp creates 0600 files; these get the permissions of any other file.
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except (OSError, RuntimeError) as error:
        # torch's zip writer reports a failed write (ENOSPC) as "unexpected pos": the OSError
        # it hides is its context.
        cause = _os_error_behind(error)
        if cause is None:
            raise
        hint = "; free some space there" if cause.errno == errno.ENOSPC else ""
        raise UserError(f"cannot write {path}: {cause.strerror or cause}{hint}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _os_error_behind(error: BaseException | None) -> OSError | None:
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OSError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None
