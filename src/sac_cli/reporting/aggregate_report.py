"""What `sac-plot --aggregate` writes: rliable's figures (aggregate_intervals, aggregate_profiles,
aggregate_improvement; PNG and SVG) and the numbers behind them (aggregate.md, aggregate.csv)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sac_cli.files import atomic_write_text  # noqa: E402
from sac_cli.reporting.aggregate import (  # noqa: E402
    PAIR_SEPARATOR,
    Interval,
    ScoreTable,
)
from sac_cli.reporting.figures import save_figure  # noqa: E402
from sac_cli.reporting.tables import fmt  # noqa: E402

ROW_HEIGHT = 0.45  # inches per group in the interval figure


def score_name(table: ScoreTable, metric: str) -> str:
    return "normalised score" if table.normalized else f"final {metric}"


def write_figures(
    table: ScoreTable,
    metric: str,
    estimates: dict[str, dict[str, Interval]],
    profiles: tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]],
    improvements: dict[str, Interval],
    out_dir: Path,
) -> list[Path]:
    from rliable import plot_utils

    labels = list(table.scores)
    names = list(estimates)
    points = {g: np.array([estimates[m][g].estimate for m in names]) for g in labels}
    cis = {g: np.array([[estimates[m][g].low for m in names],
                        [estimates[m][g].high for m in names]]) for g in labels}
    fig, _ = plot_utils.plot_interval_estimates(
        points, cis, metric_names=names, algorithms=labels, xlabel=score_name(table, metric),
        row_height=ROW_HEIGHT,
        # rliable places the axis name in figure coordinates: keep it about 0.6 inch below.
        xlabel_y_coordinate=-0.6 / (ROW_HEIGHT * len(labels)))
    paths = save_figure(fig, out_dir / "aggregate_intervals")

    taus, profile, profile_cis = profiles
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(
        profile, taus, performance_profile_cis=profile_cis, ax=ax,
        xlabel=f"{score_name(table, metric)} (τ)", ylabel="fraction of runs with score > τ",
        labelsize="medium", ticklabelsize="medium")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    paths += save_figure(fig, out_dir / "aggregate_profiles")

    if improvements:
        fig, ax = plt.subplots(figsize=(5, 1 + 0.6 * len(improvements)))
        plot_utils.plot_probability_of_improvement(
            {pair: np.array([i.estimate]) for pair, i in improvements.items()},
            {pair: np.array([[i.low], [i.high]]) for pair, i in improvements.items()},
            pair_separator=PAIR_SEPARATOR, ax=ax, labelsize="medium", ticklabelsize="medium")
        paths += save_figure(fig, out_dir / "aggregate_improvement")
    return paths


def rows(estimates: dict[str, dict[str, Interval]], improvements: dict[str, Interval]):
    """(statistic, group, estimate, CI low, CI high) for every number reported."""
    for name, by_group in estimates.items():
        for group, interval in by_group.items():
            yield name, group, interval
    for pair, interval in improvements.items():
        yield "probability of improvement", pair, interval


def markdown(table: ScoreTable, metric: str, estimates: dict[str, dict[str, Interval]],
             improvements: dict[str, Interval], reps: int) -> str:
    runs = ", ".join(f"{group}: {s.shape[0]}" for group, s in table.scores.items())
    lines = [
        f"Aggregate over {len(table.tasks)} tasks ({', '.join(table.tasks)}) with rliable: "
        f"each run's {score_name(table, metric)}; 95% CIs by stratified bootstrap "
        f"({reps} resamples of the runs of each task). Runs per task: {runs}.",
        "",
    ]
    if table.normalized:
        lines += ["Normalised: (return - random) / (reference - random); sources in "
                  "sac_cli/reporting/scores.py (D4RL for MuJoCo, 0 and 1000 for DMC). "
                  "Optimality gap: the mean shortfall below 1 (lower is better).", ""]
    else:
        lines += ["Raw returns: tasks of different scales weigh unequally (--normalize puts "
                  "them on one scale and adds the optimality gap).", ""]
    lines += ["| statistic | group | estimate | 95% CI |", "|---|---|---:|---|"]
    for name, group, interval in rows(estimates, improvements):
        cells = [name, group, fmt(interval.estimate),
                 f"[{fmt(interval.low)}, {fmt(interval.high)}]"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(table: ScoreTable, metric: str, estimates: dict[str, dict[str, Interval]],
                 improvements: dict[str, Interval], reps: int, out_dir: Path) -> list[Path]:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["statistic", "group", "estimate", "ci_low", "ci_high", "score"])
    score = "normalized" if table.normalized else "raw"
    for name, group, interval in rows(estimates, improvements):
        writer.writerow([name, group, repr(interval.estimate), repr(interval.low),
                         repr(interval.high), score])
    csv_path, md_path = out_dir / "aggregate.csv", out_dir / "aggregate.md"
    atomic_write_text(text.getvalue(), csv_path)
    atomic_write_text(markdown(table, metric, estimates, improvements, reps), md_path)
    return [md_path, csv_path]
