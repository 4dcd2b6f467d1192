"""The commands to print for a user to run next (resume, evaluate, plot), spelled as this
process was started: `.venv/bin/sac-eval` when `.venv/bin/sac-train` runs without the
virtual environment on PATH, so that a copied command works as printed."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

RUN_DIR_KEY = "hydra.run.dir="
SWEEP_DIR_KEY = "hydra.sweep.dir="


def _shown(path: Path) -> str:
    """A path relative to the working directory when it lies inside it."""
    path = Path(os.path.abspath(path))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def command(name: str) -> str:
    """How to call the console script `name`: bare if the shell finds this very script that
    way, else by the path of the folder this process's script lives in."""
    script = Path(sys.argv[0])
    sibling = script.with_name(name)
    if script.name not in ("sac-train", "sac-eval") or not sibling.exists():
        return name
    on_path = any(
        Path(folder, name).resolve() == sibling.resolve()
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and Path(folder, name).exists()
    )
    return name if on_path else _shown(sibling)


def resume_command(run_dir: Path, key: str = RUN_DIR_KEY) -> str:
    """This process's own sac-train command line, with `key` (hydra.run.dir=, or
    hydra.sweep.dir= for a sweep) set to `run_dir`."""
    args = [arg for arg in sys.argv[1:] if not arg.startswith(key)]
    return shlex.join([command("sac-train"), *args, f"{key}{_shown(run_dir)}"])


def quoted(path: Path) -> str:
    return shlex.quote(_shown(path))
