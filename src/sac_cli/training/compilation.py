"""`compile: auto|true|false`: whether the update runs through torch.compile, and whether this
machine can compile it.

`auto` (the default) compiles on CPU when the run is long enough to repay the compilation and
the toolchain Inductor's CPU code needs is here (a C++ compiler, Python's headers): in the
default two-branch mode the compiled update ran 1.07-1.13x the eager one's env steps/s on
this project's 2-core machine, and held level with it with a core taken (README, Speed);
compiling takes about 10-45 s at each start. Elsewhere `auto` runs eager: on CUDA and MPS
the compiled path has not been measured yet (`compile=true` asks for it).
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

from sac_cli.config import TrainConfig
from sac_cli.errors import UserError

# Below this many updates, `auto` runs eager: compiling (10-45 s a start here) would cost
# about what a short run gains (0.7-1 ms an update on HalfCheetah, 2 cores: 70-100 s at 100k).
COMPILE_MIN_UPDATES = 100_000


@dataclass(frozen=True)
class CompileChoice:
    on: bool
    why: str  # for the run's first log line
    # compile=auto: a failure to compile falls back to the eager update (with a warning)
    # rather than stopping the run.
    fall_back: bool = False


def planned_updates(cfg: TrainConfig) -> int:
    learning_steps = cfg.total_steps - min(cfg.learning_starts, cfg.total_steps)
    return learning_steps * cfg.agent.updates_per_step


def missing_toolchain() -> str | None:
    """What Inductor's CPU code generation lacks on this machine, or None."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception:  # noqa: BLE001 - whatever the reason, Inductor would find no compiler
        return "a C++ compiler (g++, or the one $CXX names)"
    include = sysconfig.get_paths().get("include")
    if not include or not Path(include, "Python.h").exists():
        return "Python's C headers (Python.h; Debian: apt install python3-dev)"
    return None


def choose_compile(setting: bool | str, device: torch.device, updates: int) -> CompileChoice:
    """The `compile` setting (validated: True, False or "auto") for a run of `updates` updates
    on `device`. compile=true on a CPU machine without the toolchain is a UserError."""
    if setting is False:
        return CompileChoice(False, "eager (compile=false)")
    if setting is True:
        missing = missing_toolchain() if device.type == "cpu" else None
        if missing:
            raise UserError(
                f"compile=true needs {missing} for torch.compile on CPU: install it, or use "
                "compile=auto or compile=false"
            )
        return CompileChoice(True, "compiled (compile=true)")
    if device.type != "cpu":
        return CompileChoice(False, f"eager (compile=auto compiles on CPU only; {device.type}: "
                                    "compile=true)")
    if updates < COMPILE_MIN_UPDATES:
        return CompileChoice(False, f"eager (compile=auto: {updates:,} updates are too few to "
                                    f"repay compiling, below {COMPILE_MIN_UPDATES:,})")
    missing = missing_toolchain()
    if missing:
        return CompileChoice(False, f"eager (compile=auto: torch.compile needs {missing})")
    return CompileChoice(True, "compiled (compile=auto)", fall_back=True)
