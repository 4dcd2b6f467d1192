"""Checkpoint files: atomic writes, safe loads, one clear error for every way a file can be bad."""

from __future__ import annotations

import errno
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import torch

from sac_cli.errors import UserError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
FINAL = "final.pt"
BEST = "best.pt"
FORMAT_VERSION = 1
# The keys every checkpoint written by the trainer holds (best.pt has no buffer file).
REQUIRED_KEYS = ("config", "env_id", "obs_dim", "act_dim", "step", "agent")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to `path` atomically: a kill at any instant leaves either the old file or
    the new one, never a torn one. A failed write (read-only folder, full disk) becomes a
    UserError and leaves the old file as it was."""
    _atomic_write(path, "wb", lambda handle: torch.save(obj, handle))


def atomic_write_text(text: str, path: Path) -> None:
    """A small text file (sac-eval's results, the W&B run id), written like a checkpoint."""
    _atomic_write(path, "w", lambda handle: handle.write(text))


def _atomic_write(path: Path, mode: str, write: Callable[[IO], object]) -> None:
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


def check_writable(folder: Path) -> None:
    """Fail at once, with one line, when `folder` cannot be created or written to (rather
    than hours later at the first checkpoint)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UserError(
            f"cannot write to {folder}: {error.strerror or error}; choose a writable directory"
        ) from None


def remove_stale_files(folder: Path, keep: Iterable[str]) -> None:
    """Delete what a kill can leave behind: temporary files of an interrupted write and replay
    buffer files that no checkpoint in `keep` refers to."""
    keep = set(keep)
    for path in [*folder.glob(".*.tmp"), *folder.glob("buffer-*.pt")]:
        if path.name not in keep:
            path.unlink(missing_ok=True)


def run_dir_of(path: Path) -> Path:
    """The run directory of a checkpoint file: the folder holding checkpoints/, or the file's
    own folder for a checkpoint kept elsewhere."""
    path = path.resolve()
    return path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (its checkpoints/last.pt)."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / CHECKPOINT_DIR / LAST
        if not candidate.is_file():
            raise UserError(
                f"{path} is a directory without {CHECKPOINT_DIR}/{LAST}: "
                "pass a run directory of sac-train or a .pt checkpoint file"
            )
        return candidate
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist: pass a .pt file or a run directory")
    return path


def load(
    path: Path, map_location: str | torch.device = "cpu", kind: str | None = "checkpoint"
) -> dict[str, Any]:
    """Load with weights_only=True: tensors and plain containers only, never arbitrary code.
    kind=None loads a companion file (the replay buffer) that carries no format tag."""
    if not path.is_file():
        raise UserError(f"{path} does not exist (was it deleted?): use another checkpoint")
    _check_crc(path)
    try:
        with warnings.catch_warnings():
            # e.g. "Detected pickle protocol 4": the outcome is reported below, in one line.
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        imported = re.search(r"GLOBAL ([\w.]+)", str(error))
        if imported:
            raise UserError(
                f"refusing to load {path}: unpickling it would import {imported.group(1)}, "
                "which could run code; sac-cli reads only tensors and plain data"
            ) from None
        raise UserError(
            f"{path} is not a readable checkpoint (corrupt, or not a .pt file)"
        ) from None
    except Exception as error:  # torch.load raises many types on damaged files
        raise UserError(
            f"{path} is not a readable checkpoint (truncated or corrupt: "
            f"{type(error).__name__}); use another checkpoint"
        ) from None
    if not isinstance(obj, dict) or (kind is not None and obj.get("format") != FORMAT_VERSION):
        raise UserError(f"{path} is not a sac-cli checkpoint (format {FORMAT_VERSION})")
    if kind is not None:
        missing = [key for key in REQUIRED_KEYS if key not in obj]
        if missing:
            raise UserError(f"{path} is not a complete sac-cli checkpoint (no {missing[0]!r})")
    return obj


def _check_crc(path: Path) -> None:
    """torch.load does not verify the CRC32 that torch.save writes for every record, so a
    flipped bit in a tensor would load silently; the zip module checks them."""
    try:
        if not zipfile.is_zipfile(path):
            return  # a legacy or damaged file: torch.load says what is wrong with it
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as error:
        raise UserError(
            f"{path} is not a readable checkpoint (truncated or corrupt: "
            f"{type(error).__name__}); use another checkpoint"
        ) from None
    if bad is not None:
        raise UserError(f"{path} is corrupt (checksum mismatch in {bad}); use another checkpoint")
