"""A run directory seen by one process: its lock, the resume check, its `.hydra/` record.

Nothing in an existing run directory changes before two things hold: this process holds the
directory's lock (a second `sac-train` there is refused, naming the holder's pid), and the
run may resume with the settings given (check_resumable). Only then is `.hydra/` written:
Hydra's own writing of it is switched off (`hydra.output_subdir: null` in train.yaml),
because Hydra writes it before any of sac-cli's code runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sac_cli.config import upgrade_saved_config
from sac_cli.errors import UserError
from sac_cli.files import atomic_write_text

LOCK_FILE = ".sac-train.lock"
HYDRA_DIR = ".hydra"
# Top-level config keys that a resumed run may change: they steer bookkeeping (length,
# hardware, logging, evaluation, checkpoint cadence), not what is learned from the data.
RESUME_MAY_CHANGE = frozenset(
    {"total_steps", "device", "threads", "compile", "eval", "checkpoint", "logger"}
)


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resumable(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """A run resumes only with the settings it started with (RESUME_MAY_CHANGE aside)."""
    old, new = _flatten(upgrade_saved_config(saved)), _flatten(current)
    missing = object()
    changed = [
        key
        for key in sorted(old.keys() | new.keys())
        if key.split(".")[0] not in RESUME_MAY_CHANGE
        and old.get(key, missing) != new.get(key, missing)
    ]
    if changed:
        # Every key, not a few: after an upgrade that changed defaults, a run resumes only
        # once all of them are passed as they were.
        shown = ", ".join(f"{key}={old.get(key)} (now {new.get(key)})" for key in changed)
        raise UserError(
            f"{path} belongs to a run with {shown}: resume with the original settings, or "
            "start a new run in another directory (hydra.run.dir=...)"
        )


@contextlib.contextmanager
def locked(run_dir: Path):
    """Hold an exclusive lock on `run_dir` (flock on its lock file: the OS releases it when
    the process dies, however it dies). A second process is refused with one line."""
    path = run_dir / LOCK_FILE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise UserError(
            f"cannot write to {run_dir}: {error.strerror or error}; choose a writable "
            "directory (hydra.run.dir=...)"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UserError(
                f"{run_dir} is in use by another sac-train (pid {holder}): wait for it to "
                "end, or train in another run directory (hydra.run.dir=...)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_hydra_record(run_dir: Path, task_cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """`.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml`, as Hydra would write them."""
    folder = run_dir / HYDRA_DIR
    atomic_write_text(OmegaConf.to_yaml(task_cfg), folder / "config.yaml")
    atomic_write_text(OmegaConf.to_yaml(hydra_cfg), folder / "hydra.yaml")
    atomic_write_text(OmegaConf.to_yaml(hydra_cfg.hydra.overrides.task), folder / "overrides.yaml")
