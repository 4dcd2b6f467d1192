"""sac-plot: learning curves and a results table from sac-train run directories.

    sac-plot DIR... [-o OUTDIR] [--metric eval/return_mean]

Each DIR is a run directory (a Hydra output dir holding ``metrics.jsonl`` and ``.hydra/``)
or any folder above run directories, such as a Hydra multirun dir: every directory below
it that holds a ``metrics.jsonl`` is a run.

Runs are grouped by their command-line overrides (``.hydra/overrides.yaml``), leaving out
the seed and the keys that do not change what is learned (``hydra.*``, ``device``,
``logger.*``); the environment is ``env.id`` from ``.hydra/config.yaml`` and gets a panel
of its own, so it is left out of the group label too.

Curves. The runs of one group may log at different steps (``train/*`` rows land where
episodes end), so each run is linearly interpolated onto a common grid: the union of the
group's logged steps, kept to the range that every run covers (no extrapolation; the
curve stops where the shortest run stops) and thinned to at most ``MAX_GRID_POINTS``
evenly spaced steps. Where all runs log at the same steps, as ``eval/*`` rows do, the grid
is exactly those steps and nothing is interpolated. The line is the mean over seeds; the
band is a 95% percentile-bootstrap confidence interval of that mean (``N_BOOTSTRAP``
resamples of the seeds, fixed rng seed, so the same runs always give the same picture).
A group with a single seed gets the line only.

Table (``results.md``, also printed): one row per (env, group) with the number of seeds,
the final value (each run's last logged value) and the best value (each run's maximum),
each as the mean over seeds with its 95% bootstrap CI.

Bad input (a DIR that does not exist, no runs, a metric no run logs) ends with one line
on stderr and exit code 2. This module imports neither torch, Hydra nor W&B.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from matplotlib import ticker  # noqa: E402

from sac_cli.errors import UserError  # noqa: E402

METRICS_FILE = "metrics.jsonl"
DEFAULT_METRIC = "eval/return_mean"
N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
# permutation_p enumerates every split of the pooled seeds up to this many (8 + 8 seeds: 12,870).
MAX_EXACT_SPLITS = 200_000
MAX_GRID_POINTS = 500
# Overrides that say nothing about what is learned: never split groups on them.
IGNORED_KEYS = ("seed", "device", "logger")
IGNORED_PREFIXES = ("hydra.", "device.", "logger.")
# The environment has a panel of its own; it is not part of a group label.
ENV_KEYS = ("env", "env.id")
UNKNOWN_ENV = "unknown env"
# Axis names of the metrics (others are shown by their key).
METRIC_NAMES = {
    "eval/return_mean": "evaluation return (mean over episodes)",
    "eval/return_std": "evaluation return (std over episodes)",
    "train/episode_return": "training episode return",
    "train/episode_length": "training episode length",
    "loss/critic": "critic loss",
    "loss/actor": "actor loss",
    "loss/value": "value loss",
    "loss/alpha": "temperature loss",
    "alpha": "temperature alpha",
    "q/mean": "mean Q value",
    "policy/entropy": "policy entropy",
    "perf/sps": "environment steps per second",
}


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


# --------------------------------------------------------------------------- loading


def find_runs(dirs: Sequence[str | Path]) -> list[Path]:
    """Every directory at or below ``dirs`` that holds a metrics.jsonl, in sorted order."""
    found: dict[Path, None] = {}
    for d in dirs:
        root = Path(d)
        if not root.exists():
            raise UserError(f"{root}: no such directory")
        if not root.is_dir():
            raise UserError(f"{root}: not a directory (pass a run dir or a folder above runs)")
        for metrics in sorted(root.rglob(METRICS_FILE)):
            if metrics.is_file():
                found.setdefault(metrics.parent.resolve(), None)
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


# Largest step a metrics row may carry: every integer up to it is exact in a float64.
MAX_STEP = 2**53


def _read_metric(path: Path, metric: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """Steps and values of ``metric``; skips bad lines (a killed run's last line) and gaps.
    Also every metric name, and where the run diverged ("" if it did not): the first row with
    a null (a non-finite value written as strict JSON) or a bare NaN/Infinity token."""
    by_step: dict[int, float] = {}
    names: set[str] = set()
    diverged = ""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or "step" not in row:
            continue
        step = _checked_step(row["step"], path, number)
        names.update(k for k in row if k not in ("step", "time"))
        if not diverged:
            bad = next((k for k, v in row.items() if v is None or _is_nonfinite(v)), None)
            diverged = f"step {step} ({bad} is not finite)" if bad else ""
        value = row.get(metric)
        if not _is_number(value) or not math.isfinite(value):
            continue
        by_step[step] = float(value)  # a step logged twice (a resumed run): last wins
    steps = np.array(sorted(by_step), dtype=np.int64)
    values = np.array([by_step[s] for s in steps.tolist()], dtype=np.float64)
    return steps, values, tuple(sorted(names)), diverged


def _checked_step(step: object, path: Path, number: int) -> int:
    if _is_number(step) and math.isfinite(step) and step == int(step) and 0 <= step <= MAX_STEP:
        return int(step)
    raise UserError(
        f"{path}, line {number}: step {step!r} is not a whole number of steps from 0 to "
        f"{MAX_STEP}: repair or remove that row"
    )


def _is_nonfinite(x: object) -> bool:
    return _is_number(x) and not math.isfinite(x)


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def load_run(path: str | Path, metric: str = DEFAULT_METRIC) -> Run:
    """Read one run directory: its metric curve, environment, overrides and seed."""
    path = Path(path)
    steps, values, names, diverged = _read_metric(path / METRICS_FILE, metric)
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


# --------------------------------------------------------------------------- grouping


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


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs with the same environment and the same overrides (seed aside), sorted; each
    group named (in the legend and the table alike) by what sets it apart from the others."""
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], Group] = {}
    for run in runs:
        key = group_key(run.overrides)
        groups.setdefault((run.env_id, key), Group(run.env_id, "", key)).runs.append(run)
    for group in groups.values():
        # What differs between the curves of its panel (its environment's groups).
        panel = [dict(g.key) for g in groups.values() if g.env_id == group.env_id]
        differing = sorted({k for d in panel for k in d if len({e.get(k) for e in panel}) > 1})
        overrides = dict(group.key)
        shown = [(k, overrides.get(k, "default")) for k in differing] or list(group.key)
        group.label = ", ".join(f"{k}={v}" for k, v in shown) or DEFAULT_LABEL
        group.runs.sort(key=lambda r: (r.seed is None, r.seed or 0, str(r.path)))
    return sorted(groups.values(), key=lambda g: (g.env_id, g.label))


# --------------------------------------------------------------------------- statistics


def final_values(runs: Sequence[Run]) -> np.ndarray:
    """Each run's last logged value of the metric, one per seed."""
    return np.array([r.values[-1] for r in runs])


def _resampled_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means over axis 0 of ``n_boot`` resamples of its rows, shape (n_boot, ...). A resample
    is drawn as multinomial counts, so all columns share the same resamples and the work is
    one matrix product."""
    n = x.shape[0]
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n  # (n_boot, n)
    return np.tensordot(weights, x, axes=(1, 0))


def bootstrap_ci(
    samples: np.ndarray,
    n_boot: int = N_BOOTSTRAP,
    level: float = CI_LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 (the seeds) and its percentile-bootstrap CI at ``level``.

    ``samples`` has shape (n_seeds,) or (n_seeds, n_steps); all steps share the same resamples
    of the seeds. With fewer than two seeds the bounds are NaN: there is no spread to resample.
    """
    x = np.asarray(samples, dtype=np.float64)
    mean = x.mean(axis=0)
    n = x.shape[0]
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan.copy()
    means = _resampled_means(x, n_boot, np.random.default_rng(seed))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=0)
    return mean, low, high


def bootstrap_difference_ci(
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = N_BOOTSTRAP,
    level: float = CI_LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its percentile-bootstrap CI at ``level``, the seeds of each side
    resampled on their own (the two sides are independent runs). NaN bounds where a side has
    fewer than two seeds."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return diff, math.nan, math.nan
    rng = np.random.default_rng(seed)
    diffs = _resampled_means(a, n_boot, rng) - _resampled_means(b, n_boot, rng)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(diffs, [alpha, 1.0 - alpha])
    return diff, float(low), float(high)


def permutation_p(
    a: np.ndarray, b: np.ndarray, max_splits: int = MAX_EXACT_SPLITS, seed: int = BOOTSTRAP_SEED
) -> tuple[float, int]:
    """Two-sided p-value of mean(a) - mean(b) under the null that the labels are exchangeable:
    the share of relabellings of the pooled values whose difference is at least as large in
    absolute value. Exact (every split) when there are at most ``max_splits``; else that many
    random relabellings, with the observed one counted in. Returns (p, relabellings used)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pooled = np.concatenate([a, b])
    n, k = pooled.size, a.size
    observed = abs(a.mean() - b.mean())
    if math.comb(n, k) <= max_splits:
        in_a = np.zeros((math.comb(n, k), n), dtype=bool)
        for row, idx in enumerate(itertools.combinations(range(n), k)):
            in_a[row, list(idx)] = True
        exact = True
    else:
        rng = np.random.default_rng(seed)
        order = np.argsort(rng.random((max_splits, n)), axis=1)
        in_a = np.zeros((max_splits, n), dtype=bool)
        np.put_along_axis(in_a, order[:, :k], True, axis=1)
        exact = False
    diffs = np.abs(in_a @ pooled / k - (~in_a) @ pooled / (n - k))
    # A tolerance so that relabellings equal to the observed split up to rounding count.
    extreme = int(np.count_nonzero(diffs >= observed - 1e-9 * max(1.0, observed)))
    if exact:
        return extreme / len(diffs), len(diffs)
    return (extreme + 1) / (len(diffs) + 1), len(diffs) + 1


def align(runs: Sequence[Run], max_points: int = MAX_GRID_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Common step grid and the runs' values on it, shape (n_runs, n_steps).

    The grid is the union of the runs' steps inside the range all of them cover; each run is
    linearly interpolated onto it. Empty when the runs do not overlap.
    """
    runs = [r for r in runs if r.steps.size]
    if not runs:
        return np.empty(0), np.empty((0, 0))
    lo = max(r.steps[0] for r in runs)
    hi = min(r.steps[-1] for r in runs)
    grid = np.unique(np.concatenate([r.steps for r in runs])).astype(np.float64)
    grid = grid[(grid >= lo) & (grid <= hi)]
    if grid.size > max_points:
        grid = np.linspace(lo, hi, max_points)
    values = np.stack([np.interp(grid, r.steps, r.values) for r in runs])
    return grid, values


# --------------------------------------------------------------------------- outputs


def _wrap(label: str, width: int = 60) -> str:
    return "\n".join(textwrap.wrap(label, width, break_on_hyphens=False)) or label


def _layout(n_panels: int) -> tuple[int, int]:
    """(rows, cols): one row up to three panels, then a near-square grid."""
    ncols = n_panels if n_panels <= 3 else math.ceil(math.sqrt(n_panels))
    return math.ceil(n_panels / ncols), ncols


def plot_curves(groups: Sequence[Group], metric: str, out_stem: Path) -> list[Path]:
    """One panel per environment, mean over seeds with its 95% CI band per group.

    A group's colour follows its overrides, so the same configuration has the same colour
    in every panel. Writes ``out_stem`` + .png and .svg and returns the paths.
    """
    envs = sorted({g.env_id for g in groups})
    keys = sorted({g.key for g in groups})
    cmap = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    colors = {key: cmap(i % cmap.N) for i, key in enumerate(keys)}
    legend = {g.key: g.label for g in groups}

    nrows, ncols = _layout(len(envs))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, 4.2 * nrows), squeeze=False)
    handles: dict[tuple[tuple[str, str], ...], object] = {}
    for ax, env_id in zip(axes.flat, envs, strict=False):
        panel = [g for g in groups if g.env_id == env_id]
        for group in panel:
            grid, values = align(group.runs)
            if grid.size == 0:
                print(
                    f"sac-plot: warning: {env_id} / {group.label}: the runs share no steps, "
                    "no curve drawn",
                    file=sys.stderr,
                )
                continue
            mean, low, high = bootstrap_ci(values)
            color = colors[group.key]
            (line,) = ax.plot(
                grid,
                mean,
                color=color,
                linewidth=1.8,
                marker="o" if grid.size <= 30 else None,
                markersize=3.5,
                label=_wrap(legend[group.key]),
            )
            if len(group.runs) > 1:
                ax.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)
            handles.setdefault(group.key, line)
        seeds = sorted({len(g.runs) for g in panel})
        n = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        ax.set_title(f"{env_id}  ({n} seed{'' if n == '1' else 's'} per curve)")
        ax.set_xlabel("environment steps")
        ax.set_ylabel(METRIC_NAMES.get(metric, metric))
        ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(envs) :]:
        ax.set_visible(False)

    fig.tight_layout()
    lines = [handles[k] for k in keys if k in handles]
    if len(lines) > 1:  # below the panels, never over the curves
        longest = max(len(row) for line in lines for row in line.get_label().splitlines())
        ncol = 1 if longest > 45 else 2 if longest > 25 else 3
        fig.legend(
            handles=lines,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(ncol, len(lines)),
            fontsize="small",
            frameon=False,
        )
    paths = []
    for ext in ("png", "svg"):
        path = out_stem.with_suffix(f".{ext}")
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.4g}"


def _stat(samples: np.ndarray) -> tuple[str, str]:
    mean, low, high = (float(v) for v in bootstrap_ci(samples))
    ci = "n/a (1 seed)" if samples.size < 2 else f"[{_fmt(low)}, {_fmt(high)}]"
    return _fmt(mean), ci


def results_table(groups: Sequence[Group], metric: str) -> str:
    """Markdown table: per (env, group) the final and the best value, mean and 95% CI."""
    lines = [
        f"Metric `{metric}`: mean over seeds; 95% CI: percentile bootstrap of that mean "
        f"({N_BOOTSTRAP} resamples). Final: each run's last logged value. Best: each run's "
        "maximum.",
        "",
        "| env | group | seeds | last step | final | final 95% CI | best | best 95% CI |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for group in groups:
        runs = [r for r in group.runs if r.values.size]
        final = final_values(runs)
        best = np.array([r.values.max() for r in runs])
        last = sorted({int(r.steps[-1]) for r in runs})
        last_step = str(last[0]) if len(last) == 1 else f"{last[0]}-{last[-1]}"
        cells = [group.env_id, group.label, str(len(runs)), last_step, *_stat(final), *_stat(best)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    diverged = [r for g in groups for r in g.runs if r.diverged]
    if diverged:
        lines += ["", "Diverged runs (their final value is the last one before divergence):", ""]
        lines += [f"- `{r.path}`: at {r.diverged}" for r in diverged]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sac-plot",
        description="Plot learning curves (mean and 95% bootstrap CI over seeds) and write "
        "a results table from sac-train run directories.",
    )
    parser.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="a run directory, or a folder above runs (e.g. a Hydra multirun dir)",
    )
    parser.add_argument(
        "-o",
        "--out",
        metavar="OUTDIR",
        type=Path,
        default=None,
        help="where to write learning_curves.png/.svg and results.md (default: the first DIR)",
    )
    parser.add_argument(
        "--metric",
        default=DEFAULT_METRIC,
        help=f"metric key of metrics.jsonl to plot (default: {DEFAULT_METRIC})",
    )
    return parser


def make_plots(dirs: Sequence[str], metric: str, out: Path | None) -> list[Path]:
    """Load, group, plot and tabulate; returns the paths written. Raises UserError."""
    runs = [load_run(p, metric) for p in find_runs(dirs)]
    with_metric = [r for r in runs if r.values.size]
    if not with_metric:
        present = sorted({name for r in runs for name in r.metrics})
        raise UserError(
            f"no run logs the metric '{metric}'; metrics present: "
            f"{', '.join(present) or 'none'} (choose one with --metric)"
        )
    if len(with_metric) < len(runs):
        print(
            f"sac-plot: warning: {len(runs) - len(with_metric)} of {len(runs)} runs do not "
            f"log '{metric}' and are left out",
            file=sys.stderr,
        )
    for run in with_metric:
        if run.values.size < 2:
            print(
                f"sac-plot: warning: {run.path} has only one value of '{metric}' (step "
                f"{int(run.steps[0])}): too few for a curve; raise total_steps or lower "
                "eval.every",
                file=sys.stderr,
            )
    for run in runs:
        if run.diverged:
            print(
                f"sac-plot: warning: {run.path} diverged at {run.diverged}: its curve and "
                "final value stop before that",
                file=sys.stderr,
            )
    groups = group_runs(with_metric)

    out_dir = out if out is not None else Path(dirs[0])
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o {out_dir}: exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = plot_curves(groups, metric, out_dir / "learning_curves")
        table = results_table(groups, metric)
        results = out_dir / "results.md"
        results.write_text(table)
    except OSError as exc:
        raise UserError(f"cannot write to {out_dir}: {exc.strerror or exc}") from exc
    print(table)
    return [*paths, results]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sac-plot``; returns the exit code (0, or 2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        paths = make_plots(args.dirs, args.metric, args.out)
    except UserError as exc:
        print(f"sac-plot: error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
