"""The benchmark's report: per environment, each implementation's final and best returns
with CIs, the mean at each evaluation, the training speed and the comparison of the two; the
learning curves (sac-plot's figures)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sac_cli.bench.learning.jobs import IMPL_LABELS, IMPLS, METRIC
from sac_cli.errors import UserError
from sac_cli.files import atomic_write_text
from sac_cli.reporting import metrics
from sac_cli.reporting.figures import plot_curves
from sac_cli.reporting.runs import Group, Run, final_values, load_run
from sac_cli.reporting.stats import N_BOOTSTRAP
from sac_cli.reporting.tables import difference_line, fmt, stat


def load_groups(out: Path, envs: list[str] | None = None) -> list[Group]:
    """The runs under out/ENV/IMPL/seed=N, grouped by (env, implementation)."""
    groups: list[Group] = []
    env_dirs = sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []
    for env_dir in env_dirs:
        for impl in IMPLS:
            impl_dir = env_dir / impl
            if not impl_dir.is_dir():
                continue
            runs = [
                load_run(p, METRIC)
                for p in sorted(impl_dir.glob("seed=*"))
                if (p / metrics.METRICS_FILE).is_file()
            ]
            runs = [r for r in runs if r.values.size]
            if not runs:
                continue
            env_id = runs[0].env_id
            if envs is not None and env_id not in envs:
                continue
            runs.sort(key=lambda r: (r.seed is None, r.seed or 0))
            groups.append(Group(env_id, IMPL_LABELS[impl], (("impl", impl),), runs))
    return groups


def _train_sps(run: Run) -> float:
    """Environment steps per second of training (evaluation time left out)."""
    rows = [row for _, _, row in metrics.rows(run.path / metrics.METRICS_FILE)]
    sb3 = [r["perf/train_sps"] for r in rows if "perf/train_sps" in r]
    if sb3:
        return float(sb3[-1])
    # sac-cli logs perf/sps over each logger window (evaluations excluded where the window
    # holds none); the median over windows is robust to the windows that hold an evaluation.
    ours = [r["perf/sps"] for r in rows if "perf/sps" in r]
    return float(np.median(ours)) if ours else math.nan


def env_table(groups: list[Group], env_id: str) -> list[str]:
    panel = [g for g in groups if g.env_id == env_id]
    steps = sorted({int(s) for g in panel for r in g.runs for s in r.steps})
    header = [
        "implementation",
        "seeds",
        "final return",
        "final 95% CI",
        "best",
        *[f"@{_kilo(s)}" for s in steps],
        "train steps/s",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|---:|---:|---|---:|" + "---:|" * len(steps) + "---:|",
    ]
    for group in panel:
        runs = group.runs
        final = final_values(runs)
        best = np.array([r.values.max() for r in runs])
        at = []
        for s in steps:
            vals = [float(r.values[r.steps == s][0]) for r in runs if np.any(r.steps == s)]
            at.append(fmt(float(np.mean(vals))) if len(vals) == len(runs) else "n/a")
        sps = [_train_sps(r) for r in runs]
        cells = [
            group.label,
            str(len(runs)),
            *stat(final),
            stat(best)[0],
            *at,
            f"{np.nanmean(sps):.0f}" if np.any(np.isfinite(sps)) else "n/a",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for group in panel:
        per_seed = ", ".join(
            f"{r.seed}: {fmt(float(r.values[-1]))} (step {int(r.steps[-1])})"
            for r in group.runs
        )
        lines.append(f"- {group.label}, final return per seed: {per_seed}")
    by_impl = {dict(g.key)["impl"]: g for g in panel}
    if set(by_impl) == set(IMPLS):
        lines.append(difference_line(*(by_impl[impl] for impl in IMPLS), "final return"))
    return lines


def _kilo(step: int) -> str:
    return f"{step // 1000}k" if step % 1000 == 0 else str(step)


def write_report(out: Path, groups: list[Group], command: str) -> tuple[str, list[Path]]:
    if not groups:
        raise UserError(f"no finished evaluations under {out}")
    lines = [
        "# Learning benchmark: sac-cli vs Stable-Baselines3 SAC",
        "",
        f"Command: `{command}`",
        "",
        f"Metric `{METRIC}`: deterministic policy, mean return of the evaluation episodes on a "
        "separate environment, episode seeds from `sac_cli.seeding.eval_seeds(seed, step, "
        "episodes)` for both implementations. Final: each seed's last evaluation; the mean "
        f"over seeds with its 95% percentile-bootstrap CI ({N_BOOTSTRAP} resamples). "
        "Best: mean over seeds of each seed's best evaluation. @step: mean over seeds at that "
        "step. Train steps/s: environment steps per second while training, evaluation "
        "excluded (one torch thread, CPU, runs sharing the machine). The last line compares "
        "the final returns: sac-cli's mean minus SB3's, its 95% bootstrap CI (each side's "
        "seeds resampled on their own) and the two-sided permutation p-value of that "
        "difference.",
    ]
    for env_id in sorted({g.env_id for g in groups}):
        lines += ["", f"## {env_id}", "", *env_table(groups, env_id)]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    paths = plot_curves(groups, METRIC, out / "learning_curves")
    table = out / "learning.md"
    atomic_write_text(text, table)
    return text, [*paths, table]
