"""Shared by the entry points: Hydra and user errors become one line and a non-zero exit."""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException

from sac_cli.envs import dmc
from sac_cli.errors import UserError

EXIT_USAGE = 2
Task = TypeVar("Task", bound=Callable[..., Any])


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def one_line(error: BaseException, prog: str = "sac-train") -> str:
    """The first useful line of a Hydra/OmegaConf/sac-cli error, with what to do about it."""
    lines = _lines(str(error)) or [type(error).__name__]
    if isinstance(error, OverrideParseException):
        key, _, value = str(error.override).partition("=")
        return (
            f"cannot read the override {error.override!r} ({lines[0]}): a value holding '=', "
            f"',' or spaces (a sweep's run directory) needs quotes Hydra sees, e.g. "
            f"{key}=\"'{value}'\" in the shell"
        )
    if isinstance(error, MissingConfigException):
        missing = re.search(r"Could not find '([^/']+)/([^']+)'", lines[0])
        if missing and any(line.startswith("Available options") for line in lines):
            group, option = missing.groups()
            start = next(i for i, line in enumerate(lines) if line.startswith("Available options"))
            end = next((i for i, line in enumerate(lines) if line.startswith("Config search path")),
                       len(lines))
            choices = ", ".join(lines[start + 1 : end])
            hint = " (or env.id=<any Gymnasium id>)" if group == "env" else ""
            return f"{group}={option} is not an option of '{group}'; choose one of: {choices}{hint}"
        return lines[0]
    cause = error.__cause__ or error.__context__
    if not isinstance(cause, OmegaConfBaseException):
        return lines[0]
    detail = _lines(str(cause))[0] if _lines(str(cause)) else type(cause).__name__
    unknown = re.match(r"Could not override '([^']+)'", lines[0])
    if unknown:
        return (f"unknown key '{unknown.group(1)}' ({detail}): check the spelling; "
                f"`{prog} --cfg job` prints every key")
    bad_value = re.match(r"Error merging override (\S+)", lines[0])
    if bad_value:
        return f"bad value in {bad_value.group(1)}: {detail}"
    return f"{lines[0]} {detail}"


def exit_on_user_error(prog: str) -> Callable[[Task], Task]:
    """For a Hydra task function: in a single run, a UserError prints one line and exits 2
    (Hydra would add its own 'Error executing job' line); in a multirun it propagates so that
    Hydra records the failed job and its siblings go on."""

    def decorate(task: Task) -> Task:
        @functools.wraps(task)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return task(*args, **kwargs)
            except BrokenPipeError:
                quit_on_closed_pipe()
            except UserError as error:
                if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
                    raise
                print(f"{prog}: error: {error}", file=sys.stderr)
                sys.exit(EXIT_USAGE)

        return wrapper  # type: ignore[return-value]

    return decorate


def run_cli(hydra_main: Callable[[], object], prog: str) -> None:
    """Run a @hydra.main function; on bad input print `prog: error: ...` and exit 2.

    Hydra itself prints errors over several lines (and a filtered traceback for errors
    raised in the task): with HYDRA_FULL_ERROR set it re-raises them, so they are formatted
    here. A user who sets HYDRA_FULL_ERROR=1 still gets the full traceback.
    """
    wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except BrokenPipeError:
        quit_on_closed_pipe()
    except ValueError as error:
        # Hydra's own check of its flags (`-m --cfg hydra`): raised before any task runs.
        if wants_traceback or not str(error).startswith("Only one of"):
            raise
        print(f"{prog}: error: {error}: drop -m to print a config ({prog} --cfg job ...)",
              file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except (UserError, HydraException, OmegaConfBaseException) as error:
        if wants_traceback:
            raise
        print(f"{prog}: error: {one_line(error, prog)}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except OSError as error:
        # Hydra creates the run directory before any sac-cli code runs.
        if wants_traceback:
            raise
        where = f" {error.filename}" if error.filename else ""
        print(f"{prog}: error: cannot write{where}: {error.strerror or error}; "
              "choose a writable directory (hydra.run.dir=...)", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)


def quit_on_closed_pipe() -> None:
    """The reader of stdout went away (`sac-eval ... | head -1`): stop printing, quietly.
    Everything the command writes to files is written before it prints."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit would fail again
    sys.exit(0)


GENERIC_ENV = "generic"


def env_file_for_id(argv: list[str]) -> list[str]:
    """`sac-train env.id=<id>` without `env=`: the id's own env file when there is one
    (`env.id=Hopper-v4` is `env=Hopper-v4`, `env.id=dm_control/cheetah-run-v0` is
    `env=dmc/cheetah-run`), else `env=dmc/generic` for a DeepMind Control id and `env=generic`
    for any other, so that the task never inherits the default task's settings (HalfCheetah-v4's
    3M steps). An experiment preset chooses its own env file."""
    keys = [arg.split("=", 1)[0].lstrip("+~") for arg in argv]
    if "env.id" not in keys or "env" in keys or "experiment" in keys:
        return argv
    at = keys.index("env.id")
    option = env_option_for_id(argv[at].split("=", 1)[1])
    # Beside env.id= itself: among the overrides, wherever they stand among the flags.
    return [*argv[: at + 1], f"env={option}", *argv[at + 1 :]]


def env_option_for_id(env_id: str) -> str:
    files = importlib.resources.files("sac_cli.conf") / "env"

    def has_file(option: str) -> bool:
        return files.joinpath(*f"{option}.yaml".split("/")).is_file()

    if dmc.is_dm_control(env_id):
        own = dmc.config_option(env_id)
        return own if own is not None and has_file(own) else dmc.GENERIC_OPTION
    own_file = "/" not in env_id and env_id != GENERIC_ENV and has_file(env_id)
    return env_id if own_file else GENERIC_ENV
