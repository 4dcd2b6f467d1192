"""Run directories and their groups: a run's metric curve, environment, overrides and seed;
runs that differ only in their seed form a group, named by what sets it apart.

Runs are grouped by their command-line overrides (``.hydra/overrides.yaml``), leaving out
the seed and the keys that do not change what is learned (``hydra.*``, ``device``,
``logger.*``); the environment is ``env.id`` from ``.hydra/config.yaml`` and gets a panel
of its own, so it is left out of the group's name too.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from sac_cli.errors import UserError
from sac_cli.reporting import metrics
from sac_cli.reporting.metrics import METRICS_FILE

DEFAULT_METRIC = "eval/return_mean"
# Overrides that say nothing about what is learned: never split groups on them.
IGNORED_KEYS = ("seed", "device", "logger")
IGNORED_PREFIXES = ("hydra.", "device.", "logger.")
# The environment has a panel of its own; it is not part of a group label.
ENV_KEYS = ("env", "env.id")
UNKNOWN_ENV = "unknown env"


@dataclass(eq=False)
class Run:
    """One run directory, reduced to what sac-plot needs."""

    path: Path
    env_id: str
    overrides: dict[str, str]
    seed: int | None
    steps: np.ndarray  # int64, increasing, rows that log the metric
    values: np.ndarray  # float64, one value per step
    metrics: tuple[str, ...] = ()  # every metric name the run logs (for error messages)
    diverged: str = ""  # where training diverged ("step N (loss/critic is not finite)"), or ""


@dataclass(eq=False)
class Group:
    """Runs of one environment that differ only in their seed."""

    env_id: str
    label: str
    key: tuple[tuple[str, str], ...] = ()  # the overrides that define it, sorted
    runs: list[Run] = field(default_factory=list)


def find_runs(dirs: Sequence[str | Path]) -> list[Path]:
    """Every directory at or below ``dirs`` that holds a metrics.jsonl, in sorted order."""
    found: dict[Path, None] = {}
    for d in dirs:
        root = Path(d)
        if not root.exists():
            raise UserError(f"{root}: no such directory")
        if not root.is_dir():
            raise UserError(f"{root}: not a directory (pass a run dir or a folder above runs)")
        for path in sorted(root.rglob(METRICS_FILE)):
            if path.is_file():
                found.setdefault(path.parent.resolve(), None)
    if not found:
        names = ", ".join(str(d) for d in dirs)
        raise UserError(f"no {METRICS_FILE} found under {names}: pass sac-train output dirs")
    return list(found)


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, yaml.YAMLError) as exc:
        print(
            f"sac-plot: warning: ignoring unreadable {path}: {exc}".splitlines()[0], file=sys.stderr
        )
        return None


def parse_overrides(items: object) -> dict[str, str]:
    """``["seed=1", "+a.b=2", "~c"]`` -> ``{"seed": "1", "a.b": "2", "c": ""}``."""
    overrides: dict[str, str] = {}
    if not isinstance(items, list):
        return overrides
    for item in items:
        key, _, value = str(item).partition("=")
        key = key.strip().lstrip("+~")
        if key:
            overrides[key] = value.strip()
    return overrides


def read_metric(path: Path, metric: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """Steps and values of ``metric``; skips bad lines (a killed run's last line) and gaps.
    Also every metric name, and where the run diverged ("" if it did not): the first row with
    a null (a non-finite value written as strict JSON) or a bare NaN/Infinity token."""
    by_step: dict[int, float] = {}
    names: set[str] = set()
    diverged = ""
    for _, _, row in metrics.rows(path):
        step = row["step"]
        names.update(k for k in row if k not in metrics.ROW_KEYS)
        if not diverged:
            bad = next((k for k, v in row.items() if v is None or metrics.is_nonfinite(v)), None)
            diverged = f"step {step} ({bad} is not finite)" if bad else ""
        value = row.get(metric)
        if not metrics.is_number(value) or not math.isfinite(value):
            continue
        by_step[step] = float(value)  # a step logged twice (a resumed run): last wins
    steps = np.array(sorted(by_step), dtype=np.int64)
    values = np.array([by_step[s] for s in steps.tolist()], dtype=np.float64)
    return steps, values, tuple(sorted(names)), diverged


def load_run(path: str | Path, metric: str = DEFAULT_METRIC) -> Run:
    """Read one run directory: its metric curve, environment, overrides and seed."""
    path = Path(path)
    steps, values, names, diverged = read_metric(path / METRICS_FILE, metric)
    config = _read_yaml(path / ".hydra" / "config.yaml")
    config = config if isinstance(config, dict) else {}
    overrides = parse_overrides(_read_yaml(path / ".hydra" / "overrides.yaml"))

    env = config.get("env")
    env_id = env.get("id") if isinstance(env, dict) else None
    env_id = env_id or overrides.get("env.id") or overrides.get("env") or UNKNOWN_ENV

    seed = config.get("seed", overrides.get("seed"))
    try:
        seed = int(seed) if seed is not None else None
    except (TypeError, ValueError):
        seed = None
    return Run(path, str(env_id), overrides, seed, steps, values, names, diverged)



def group_key(overrides: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The overrides that define a group: all but the seed, env and bookkeeping keys."""
    return tuple(
        sorted(
            (k, v)
            for k, v in overrides.items()
            if k not in IGNORED_KEYS and k not in ENV_KEYS and not k.startswith(IGNORED_PREFIXES)
        )
    )


DEFAULT_LABEL = "default config"


Key = tuple[tuple[str, str], ...]


def labels_by_key(keys: Sequence[Key]) -> dict[Key, str]:
    """Each key (a group's overrides) named by what sets it apart from the other keys."""
    dicts = [dict(k) for k in keys]
    differing = sorted({k for d in dicts for k in d if len({e.get(k) for e in dicts}) > 1})
    labels = {}
    for key in keys:
        overrides = dict(key)
        shown = [(k, overrides.get(k, "default")) for k in differing] or list(key)
        labels[key] = ", ".join(f"{k}={v}" for k, v in shown) or DEFAULT_LABEL
    return labels


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs with the same environment and the same overrides (seed aside), sorted; each
    group named (in the legend and the table alike) by what sets it apart from the others."""
    groups: dict[tuple[str, Key], Group] = {}
    for run in runs:
        key = group_key(run.overrides)
        groups.setdefault((run.env_id, key), Group(run.env_id, "", key)).runs.append(run)
    for group in groups.values():
        # What differs between the curves of its panel (its environment's groups).
        panel = [g.key for g in groups.values() if g.env_id == group.env_id]
        group.label = labels_by_key(panel)[group.key]
        group.runs.sort(key=lambda r: (r.seed is None, r.seed or 0, str(r.path)))
    return sorted(groups.values(), key=lambda g: (g.env_id, g.label))


def final_values(runs: Sequence[Run]) -> np.ndarray:
    """Each run's last logged value of the metric, one per seed."""
    return np.array([r.values[-1] for r in runs])
