"""Checkpoint files: atomic writes, safe loads, one clear error for every way a file can be bad."""

from __future__ import annotations

import pickle
import re
import tempfile
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from sac_cli.errors import UserError
from sac_cli.files import atomic_write

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
FINAL = "final.pt"
BEST = "best.pt"
FORMAT_VERSION = 1
# The keys every checkpoint written by the trainer holds (best.pt has no buffer file).
REQUIRED_KEYS = ("config", "env_id", "obs_dim", "act_dim", "step", "agent")


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to `path` atomically: a kill at any instant leaves either the old file or
    the new one, never a torn one. A failed write (read-only folder, full disk) becomes a
    UserError and leaves the old file as it was."""
    atomic_write(path, "wb", lambda handle: torch.save(obj, handle))


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
