"""Learning-curve figures: one panel per environment, each group's mean over seeds with its
95% bootstrap band, the legend below the panels.

The runs of one group may log at different steps (``train/*`` rows land where episodes
end), so each run is linearly interpolated onto a common grid: the union of the group's
logged steps, kept to the range that every run covers (no extrapolation; the curve stops
where the shortest run stops) and thinned to at most ``MAX_GRID_POINTS`` evenly spaced
steps. Where all runs log at the same steps, as ``eval/*`` rows do, the grid is exactly
those steps and nothing is interpolated. A group with a single seed gets the line only.
"""

from __future__ import annotations

import math
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402

from sac_cli.reporting.runs import Group, Run  # noqa: E402
from sac_cli.reporting.stats import bootstrap_ci  # noqa: E402

MAX_GRID_POINTS = 500
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
    return save_figure(fig, out_stem)


def save_figure(fig: plt.Figure, out_stem: Path) -> list[Path]:
    """`out_stem` + .png and .svg; closes the figure."""
    paths = []
    for ext in ("png", "svg"):
        path = out_stem.with_suffix(f".{ext}")
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths
