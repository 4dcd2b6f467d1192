"""sac-plot: learning curves and a results table from sac-train run directories.

    sac-plot DIR... [-o OUTDIR] [--metric eval/return_mean]
    sac-plot DIR... --aggregate [--normalize] [--reps N]

Each DIR is a run directory (a Hydra output dir holding ``metrics.jsonl`` and ``.hydra/``)
or any folder above run directories, such as a Hydra multirun dir: every directory below
it that holds a ``metrics.jsonl`` is a run. Runs are grouped by their overrides
(reporting/runs.py), drawn as curves with 95% bootstrap bands (reporting/figures.py) and
tabulated (reporting/tables.py, ``results.md``, also printed, with the difference of every
two groups of an environment). With ``--aggregate``, the
runs' final values are aggregated over tasks and seeds with rliable instead
(reporting/aggregate.py; aggregate_*.png/.svg, aggregate.md, aggregate.csv).

Bad input (a DIR that does not exist, no runs, a metric no run logs, a bad metrics row) ends
with one line on stderr and exit code 2. This module imports neither torch, Hydra nor W&B.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sac_cli.errors import UserError
from sac_cli.files import atomic_write_text
from sac_cli.reporting import aggregate, aggregate_report
from sac_cli.reporting.aggregate import N_REPS
from sac_cli.reporting.figures import plot_curves
from sac_cli.reporting.runs import DEFAULT_METRIC, Run, find_runs, group_runs, load_run
from sac_cli.reporting.tables import results_table


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
    parser.add_argument(
        "--aggregate",
        action="store_true",
        help="aggregate the runs' final values over tasks and seeds with rliable: IQM, mean "
        "(and optimality gap with --normalize) with stratified bootstrap CIs, performance "
        "profiles, probability of improvement between every two groups; writes "
        "aggregate_{intervals,profiles,improvement}.png/.svg, aggregate.md and aggregate.csv",
    )
    parser.add_argument(
        "--normalize",
        action="store_true",
        help="with --aggregate: (return - random) / (reference - random) per task, from "
        "D4RL's random and expert returns (HalfCheetah, Hopper, Walker2d, Ant, -v4/-v5) and "
        "0 to 1000 for dm_control tasks (default: raw returns)",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=N_REPS,
        help=f"with --aggregate: bootstrap resamples (default: {N_REPS})",
    )
    return parser


def load_runs(dirs: Sequence[str], metric: str) -> list[Run]:
    """The runs under `dirs` that log `metric`, warning about the others. Raises UserError."""
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
    return with_metric


def output_dir(dirs: Sequence[str], out: Path | None) -> Path:
    out_dir = out if out is not None else Path(dirs[0])
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o {out_dir}: exists and is not a directory")
    return out_dir


def make_plots(dirs: Sequence[str], metric: str, out: Path | None) -> list[Path]:
    """Load, group, plot and tabulate; returns the paths written. Raises UserError."""
    groups = group_runs(load_runs(dirs, metric))
    out_dir = output_dir(dirs, out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = plot_curves(groups, metric, out_dir / "learning_curves")
        table = results_table(groups, metric)
        results = out_dir / "results.md"
        atomic_write_text(table, results)
    except OSError as exc:
        raise UserError(f"cannot write to {out_dir}: {exc.strerror or exc}") from exc
    print(table)
    return [*paths, results]


def make_aggregate(
    dirs: Sequence[str], metric: str, out: Path | None, normalize: bool, reps: int
) -> list[Path]:
    """rliable's aggregates of the runs' final values; returns the paths written."""
    if reps < 100:
        raise UserError(f"--reps {reps}: too few bootstrap resamples for a 95% CI (use >= 100)")
    aggregate.check_rliable()
    table = aggregate.score_table(load_runs(dirs, metric), normalize)
    estimates = aggregate.interval_estimates(table, reps)
    taus = aggregate.tau_grid(table)
    profiles = (taus, *aggregate.performance_profiles(table, taus, reps))
    improvements = aggregate.probabilities_of_improvement(table, reps)
    out_dir = output_dir(dirs, out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = aggregate_report.write_figures(
            table, metric, estimates, profiles, improvements, out_dir)
        paths += aggregate_report.write_tables(
            table, metric, estimates, improvements, reps, out_dir)
    except OSError as exc:
        raise UserError(f"cannot write to {out_dir}: {exc.strerror or exc}") from exc
    print(aggregate_report.markdown(table, metric, estimates, improvements, reps))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sac-plot``; returns the exit code (0, or 2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        if args.normalize and not args.aggregate:
            raise UserError("--normalize applies to --aggregate: add --aggregate")
        if args.aggregate:
            paths = make_aggregate(args.dirs, args.metric, args.out, args.normalize, args.reps)
        else:
            paths = make_plots(args.dirs, args.metric, args.out)
    except UserError as exc:
        print(f"sac-plot: error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
