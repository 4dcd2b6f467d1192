"""metrics.jsonl, read in one place: strict JSON rows, each with `step` (and `time`, the
wall-clock time); a killed run's torn last line is skipped; a row whose step is not a whole
number is an error naming the file and line."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

from sac_cli.errors import UserError

METRICS_FILE = "metrics.jsonl"
# Keys of a row that are no metric.
ROW_KEYS = ("step", "time")
# Largest step a metrics row may carry: every integer up to it is exact in a float64.
MAX_STEP = 2**53


def is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def is_nonfinite(x: object) -> bool:
    return is_number(x) and not math.isfinite(x)


def rows(path: Path) -> Iterator[tuple[int, str, dict]]:
    """(line number, the line, its row) for every line that is a JSON object with a `step`
    (which must be a whole number: UserError otherwise)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse(text, path)


def parse(text: str, path: Path) -> Iterator[tuple[int, str, dict]]:
    """rows() of a metrics file's text (path: for the error message)."""
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a torn line: the run was killed while writing it
        if isinstance(row, dict) and "step" in row:
            row["step"] = checked_step(row["step"], path, number)
            yield number, line, row


def checked_step(step: object, path: Path, number: int) -> int:
    if is_number(step) and math.isfinite(step) and step == int(step) and 0 <= step <= MAX_STEP:
        return int(step)
    raise UserError(
        f"{path}, line {number}: step {step!r} is not a whole number of steps from 0 to "
        f"{MAX_STEP}: repair or remove that row"
    )
