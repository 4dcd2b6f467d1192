"""The results table (results.md): per (environment, group) the final and the best value,
each the mean over seeds with its 95% bootstrap CI; where an environment has several groups,
the difference of every two groups' final values; the runs that diverged."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sac_cli.reporting.runs import Group, final_values
from sac_cli.reporting.stats import (
    N_BOOTSTRAP,
    bootstrap_ci,
    bootstrap_difference_ci,
    permutation_p,
)


def fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.4g}"


def stat(samples: np.ndarray) -> tuple[str, str]:
    mean, low, high = (float(v) for v in bootstrap_ci(samples))
    ci = "n/a (1 seed)" if samples.size < 2 else f"[{fmt(low)}, {fmt(high)}]"
    return fmt(mean), ci


def difference_line(first: Group, second: Group, quantity: str = "final") -> str:
    """The difference of two groups' mean final values, its bootstrap CI (each side's seeds
    resampled on their own) and the two-sided permutation p-value: what "no worse than" and
    "better than" are judged on."""
    a, b = final_values(first.runs), final_values(second.runs)
    diff, low, high = bootstrap_difference_ci(a, b)
    p, splits = permutation_p(a, b)
    ci = f"[{fmt(low)}, {fmt(high)}]" if math.isfinite(low) else "n/a (1 seed)"
    return (
        f"- {first.label} minus {second.label}, {quantity}: {fmt(diff)}, "
        f"95% bootstrap CI {ci} (seeds resampled within each side), "
        f"permutation p = {p:.3f} (two-sided, {splits} relabellings)"
    )


def differences(groups: Sequence[Group]) -> list[str]:
    """Per environment with two groups or more, the difference of every two of them."""
    lines = []
    for env_id in dict.fromkeys(g.env_id for g in groups):
        panel = [g for g in groups if g.env_id == env_id]
        pairs = [(a, b) for i, a in enumerate(panel) for b in panel[i + 1:]]
        if pairs:
            lines += ["", f"Differences of the final values, {env_id}:", ""]
            lines += [difference_line(a, b) for a, b in pairs]
    return lines


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
        cells = [group.env_id, group.label, str(len(runs)), last_step, *stat(final), *stat(best)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += differences(groups)
    diverged = [r for g in groups for r in g.runs if r.diverged]
    if diverged:
        lines += ["", "Diverged runs (their final value is the last one before divergence):", ""]
        lines += [f"- `{r.path}`: at {r.diverged}" for r in diverged]
    return "\n".join(lines) + "\n"
