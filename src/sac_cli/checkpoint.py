"""Checkpoint files: atomic writes, safe loads, one clear error for every way a file can be bad."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from sac_cli.errors import UserError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
FINAL = "final.pt"
BEST = "best.pt"
FORMAT_VERSION = 1


def atomic_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: a kill at
    any instant leaves either the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"refusing to load {path}: it holds objects other than tensors and plain data, "
            f"which could run code ({first[:160]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise UserError(
            f"{path} is not a readable checkpoint (truncated or corrupt: "
            f"{type(error).__name__}); use another checkpoint"
        ) from None
    if not isinstance(obj, dict) or (kind is not None and obj.get("format") != FORMAT_VERSION):
        raise UserError(f"{path} is not a sac-cli checkpoint (format {FORMAT_VERSION})")
    return obj
