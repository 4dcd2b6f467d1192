"""Aggregates over tasks and seeds with rliable (Agarwal et al. 2021, "Deep Reinforcement Learning
at the Edge of the Statistical Precipice"): IQM, mean and optimality gap with stratified
bootstrap CIs, performance profiles, and the probability of improvement between groups.

A run's score is its final value of the metric (runs.final_values), raw or normalised
(scores.py). A group here is what sac-plot calls a curve's overrides, across tasks: runs that
differ only in their seed and environment. rliable's stratified bootstrap resamples the runs of
each task; it needs every group to have run every task, the same number of times per task.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from sac_cli.errors import UserError
from sac_cli.reporting import scores
from sac_cli.reporting.runs import Key, Run, final_values, group_key, labels_by_key

N_REPS = 2000
BOOTSTRAP_SEED = 0
PAIR_SEPARATOR = " > "
# The optimality gap's target (rliable's gamma): the reference score, 1 once normalised.
GAP_TARGET = 1.0


@dataclass
class ScoreTable:
    tasks: list[str]
    scores: dict[str, np.ndarray]  # group label -> (runs per task, tasks)
    normalized: bool


@dataclass
class Interval:
    estimate: float
    low: float
    high: float


def score_table(runs: Sequence[Run], normalize: bool) -> ScoreTable:
    """The final scores as rliable takes them: per group a (runs, tasks) matrix, the runs of
    each task sorted by seed. Raises UserError for groups that cannot be stratified."""
    tasks = sorted({run.env_id for run in runs})
    by_key: dict[Key, dict[str, list[Run]]] = {}
    for run in runs:
        by_key.setdefault(group_key(run.overrides), {}).setdefault(run.env_id, []).append(run)
    labels = labels_by_key(list(by_key))
    table: dict[str, np.ndarray] = {}
    for key, per_task in sorted(by_key.items(), key=lambda item: labels[item[0]]):
        label = labels[key]
        missing = [task for task in tasks if task not in per_task]
        if missing:
            raise UserError(
                f"--aggregate: group '{label}' has no run of {', '.join(missing)}: every group "
                "needs every task (pass only the sweeps that cover the same tasks)"
            )
        counts = {task: len(per_task[task]) for task in tasks}
        if len(set(counts.values())) > 1:
            seen = ", ".join(f"{n} on {task}" for task, n in counts.items())
            raise UserError(
                f"--aggregate: group '{label}' has runs: {seen}; the stratified bootstrap needs "
                "the same number of seeds on every task (rerun the missing seeds)"
            )
        columns = []
        for task in tasks:
            ordered = sorted(per_task[task], key=lambda r: (r.seed is None, r.seed or 0))
            values = final_values(ordered)
            columns.append(scores.normalize(task, values) if normalize else values)
        table[label] = np.column_stack(columns)
    return ScoreTable(tasks, table, normalize)


REPORTS_PACKAGES = "pip install 'sac-cli[reports]'"


def check_rliable() -> None:
    try:
        import rliable.library  # noqa: F401  (imports arch, which fails under pandas 3)
    except Exception as error:  # ImportError, or arch's own failure at import
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserError(
            f"--aggregate needs rliable ({type(error).__name__}: {detail[:200]}): "
            f"{REPORTS_PACKAGES} (rliable 1.2's arch needs pandas<3)"
        ) from None


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """rliable's stratified bootstrap draws from numpy's global generator: seed it for
    reproducible CIs, and leave it as it was."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def metric_functions(normalized: bool) -> dict[str, object]:
    from rliable import metrics

    functions = {"IQM": metrics.aggregate_iqm, "mean": metrics.aggregate_mean}
    if normalized:  # the gap below the reference score means nothing on raw returns
        functions["optimality gap"] = metrics.aggregate_optimality_gap
    return functions


def interval_estimates(table: ScoreTable, reps: int = N_REPS) -> dict[str, dict[str, Interval]]:
    """metric -> group -> point estimate and 95% stratified bootstrap CI."""
    from rliable import library

    functions = metric_functions(table.normalized)

    def aggregate(scores_: np.ndarray) -> np.ndarray:
        return np.array([function(scores_) for function in functions.values()])

    with seeded(BOOTSTRAP_SEED):
        points, intervals = library.get_interval_estimates(table.scores, aggregate, reps=reps)
    return {
        name: {
            label: Interval(float(points[label][i]), float(intervals[label][0, i]),
                            float(intervals[label][1, i]))
            for label in table.scores
        }
        for i, name in enumerate(functions)
    }


def tau_grid(table: ScoreTable, points: int = 101) -> np.ndarray:
    """Thresholds of the performance profiles: 0 to the reference score (normalised) or over
    the range of the scores (raw)."""
    everything = np.concatenate([s.ravel() for s in table.scores.values()])
    low, high = float(everything.min()), float(everything.max())
    if table.normalized:
        low, high = min(low, 0.0), max(high, 1.0)
    return np.linspace(low, high if high > low else low + 1.0, points)


def performance_profiles(
    table: ScoreTable, taus: np.ndarray, reps: int = N_REPS
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per group the fraction of runs scoring above each tau, and its 95% CI (2, taus)."""
    from rliable import library

    with seeded(BOOTSTRAP_SEED):
        return library.create_performance_profile(table.scores, taus, reps=reps)


def improvement_pairs(labels: Sequence[str]) -> list[tuple[str, str]]:
    return [(x, y) for i, x in enumerate(labels) for y in labels[i + 1 :]]


def probabilities_of_improvement(table: ScoreTable, reps: int = N_REPS) -> dict[str, Interval]:
    """"X > Y" -> P(a run of X beats a run of Y on a task, averaged over tasks), with its 95%
    stratified bootstrap CI, for every pair of groups."""
    from rliable import library, metrics

    pairs = {
        f"{x}{PAIR_SEPARATOR}{y}": (table.scores[x], table.scores[y])
        for x, y in improvement_pairs(list(table.scores))
    }
    if not pairs:
        return {}
    with seeded(BOOTSTRAP_SEED):
        points, intervals = library.get_interval_estimates(
            pairs, metrics.probability_of_improvement, reps=reps)
    return {
        pair: Interval(*(float(np.ravel(v)[0]) for v in (points[pair], *intervals[pair])))
        for pair in pairs
    }
