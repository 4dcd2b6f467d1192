"""Shared by the entry points: Hydra and user errors become one line and a non-zero exit."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException

from sac_cli.errors import UserError

EXIT_USAGE = 2


def one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if isinstance(error, MissingConfigException) and "Available options" in str(error):
        head = lines[0]
        start = next(i for i, line in enumerate(lines) if line.startswith("Available options"))
        return f"{head}; {lines[start].rstrip(':')}: {', '.join(lines[start + 1 :])}"
    message = lines[0] if lines else type(error).__name__
    cause = error.__cause__ or error.__context__
    if isinstance(cause, OmegaConfBaseException):
        cause_lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
        key = next(
            (line.split(":", 1)[1].strip() for line in cause_lines if line.startswith("full_key:")),
            None,
        )
        detail = cause_lines[0] if cause_lines else type(cause).__name__
        message = f"{message} {detail}" + (f" (key: {key})" if key and key not in message else "")
        hint = next((line for line in lines[1:] if line.startswith("To append")), None)
        if "not in struct" in detail:
            message += "; check the spelling (`--cfg job` prints every key)"
        elif hint:
            message += f"; {hint}"
    return message


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
    except (UserError, HydraException, OmegaConfBaseException) as error:
        if wants_traceback:
            raise
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
