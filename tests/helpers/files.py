"""What a run directory holds, to show that a command changed nothing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from sac_cli.training.run_dir import LOCK_FILE


def snapshot(folder: Path) -> dict[str, str]:
    """Every file's content, .hydra/ included, but the lock file (it names its holder's pid)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != LOCK_FILE
    }


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of a finished run that a test may change (tmp_path/run)."""
    shutil.copytree(run_dir, tmp_path / "run")
    return tmp_path / "run"
