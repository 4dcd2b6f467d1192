"""sac-plot on fake run directories laid out as sac-train and Hydra write them.

Pendulum-v1: two groups (optimizer.critic_lr=0.001 and 0.0003) x three seeds, from a Hydra
multirun dir nested a level deeper; Hopper-v4: one group x two seeds that log at different
steps. Every value is a simple function of (group, seed, step), so the expected table
entries are computed here by hand.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

if importlib.util.find_spec("sac_cli") is None:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from sac_cli.cli import plot  # noqa: E402
from sac_cli.reporting.figures import align
from sac_cli.reporting.runs import Run, find_runs, group_runs, load_run
from sac_cli.reporting.stats import bootstrap_ci, bootstrap_difference_ci, permutation_p

EVAL_STEPS = list(range(0, 50_001, 5_000))
SEEDS = (0, 1, 2)
LR_FAST, LR_SLOW = "0.001", "0.0003"


def pendulum_return(lr: str, seed: int, step: int) -> float:
    """Fast lr: rises to -200 - 10*seed. Slow lr: peaks at step 25k then falls back."""
    if lr == LR_FAST:
        return -1200.0 + 1000.0 * step / 50_000 - 10.0 * seed
    peak = -400.0 + 5.0 * seed
    return peak - 0.02 * abs(step - 25_000)


def write_run(
    run_dir: Path,
    env_id: str,
    overrides: list[str],
    seed: int,
    rows: list[dict],
    tail: str = "",
) -> Path:
    """A run directory: metrics.jsonl (plus an optional raw tail) and .hydra/*.yaml."""
    (run_dir / ".hydra").mkdir(parents=True)
    lines = [json.dumps(row) for row in rows]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n" + tail)
    config = {
        "env": {"id": env_id, "reward_scale": 5.0},
        "agent": {"name": "sac", "batch_size": 256},
        "optimizer": {"critic_lr": 3e-4},
        "seed": seed,
        "device": "auto",
    }
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return run_dir


def pendulum_rows(lr: str, seed: int) -> list[dict]:
    rows = []
    for step in EVAL_STEPS:
        # train rows between evals carry no eval metric and must be skipped
        rows.append({"step": step + 200, "train/episode_return": -1000.0 + step / 100})
        value = pendulum_return(lr, seed, step)
        rows.append({"step": step, "eval/return_mean": value, "eval/return_std": 40.0})
    return rows


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    """outputs/multirun/<date>/<time>/{sweep}/{job}: 2 groups x 3 seeds of Pendulum-v1."""
    root = tmp_path / "outputs" / "multirun" / "2026-11-23" / "10-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {mode: MULTIRUN}\n")
    job = 0
    for lr in (LR_FAST, LR_SLOW):
        for seed in SEEDS:
            overrides = [f"seed={seed}", f"optimizer.critic_lr={lr}", "env=Pendulum-v1"]
            if seed == 1:  # bookkeeping overrides must not split a group
                overrides += ["device=cpu", "logger.mode=disabled", "hydra.job.chdir=true"]
            # the fast-lr seed-2 run was killed mid-write: its last line is cut off
            tail = '{"step": 55000, "eval/return_m' if (lr, seed) == (LR_FAST, 2) else ""
            write_run(
                root / f"sweep_{lr}" / str(job),
                "Pendulum-v1",
                overrides,
                seed,
                pendulum_rows(lr, seed),
                tail,
            )
            job += 1
    return root


@pytest.fixture
def hopper(tmp_path: Path) -> Path:
    """Two Hopper-v4 seeds whose evals land on different steps."""
    root = tmp_path / "outputs" / "2026-11-24"
    for seed, steps in ((0, range(0, 30_001, 3_000)), (1, range(0, 30_001, 5_000))):
        rows = [{"step": s, "eval/return_mean": 100.0 + s / 100 + 50 * seed} for s in steps]
        write_run(root / f"09-00-0{seed}", "Hopper-v4", [f"seed={seed}", "env=hopper"], seed, rows)
    return root


def table_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """results.md rows keyed by (env, group)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("env", "---"):
            rows[(cells[0], cells[1])] = cells
    return rows


def test_plots_and_table(multirun: Path, hopper: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert plot.main([str(multirun), str(hopper), "-o", str(out)]) == 0

    png, svg, md = out / "learning_curves.png", out / "learning_curves.svg", out / "results.md"
    assert svg.is_file() and svg.stat().st_size > 10_000
    assert png.is_file() and png.stat().st_size > 10_000
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50  # curves, bands, text: not a blank or one-colour image
    assert (pixels.min(axis=-1) < 0.9).mean() > 0.01

    rows = table_rows(md.read_text())
    assert set(rows) == {
        ("Pendulum-v1", f"optimizer.critic_lr={LR_FAST}"),
        ("Pendulum-v1", f"optimizer.critic_lr={LR_SLOW}"),
        ("Hopper-v4", "default config"),
    }
    # columns: env, group, seeds, last step, final, final CI, best, best CI
    fast = rows[("Pendulum-v1", f"optimizer.critic_lr={LR_FAST}")]
    finals = [pendulum_return(LR_FAST, s, EVAL_STEPS[-1]) for s in SEEDS]  # -200, -210, -220
    assert fast[2] == "3" and fast[3] == "50000"
    assert float(fast[4]) == pytest.approx(np.mean(finals))  # -210.0
    assert float(fast[6]) == pytest.approx(np.mean(finals))  # rising: best == final
    low, high = (float(x) for x in fast[5].strip("[]").split(","))
    assert min(finals) <= low < np.mean(finals) < high <= max(finals)

    slow = rows[("Pendulum-v1", f"optimizer.critic_lr={LR_SLOW}")]
    slow_finals = [pendulum_return(LR_SLOW, s, EVAL_STEPS[-1]) for s in SEEDS]
    slow_bests = [pendulum_return(LR_SLOW, s, 25_000) for s in SEEDS]
    assert float(slow[4]) == pytest.approx(np.mean(slow_finals))  # -895.0
    assert float(slow[6]) == pytest.approx(np.mean(slow_bests))  # -395.0

    hop = rows[("Hopper-v4", "default config")]
    assert hop[2] == "2" and float(hop[4]) == pytest.approx(np.mean([400.0, 450.0]))

    # Pendulum's two groups are compared (Hopper has one group: nothing to compare).
    diff, low, high = bootstrap_difference_ci(slow_finals, finals)
    assert diff == pytest.approx(-685.0)
    assert "Differences of the final values, Pendulum-v1:" in md.read_text()
    assert "Differences of the final values, Hopper-v4" not in md.read_text()
    line = next(x for x in md.read_text().splitlines() if " minus " in x)
    assert line.startswith(
        f"- optimizer.critic_lr={LR_SLOW} minus optimizer.critic_lr={LR_FAST}, final: -685.0, "
        f"95% bootstrap CI [{low:.1f}, {high:.1f}]"
    )
    # 3 + 3 seeds, every slow seed below every fast one: 2 of the 20 splits are as extreme.
    assert line.endswith("permutation p = 0.100 (two-sided, 20 relabellings)")

    printed = capsys.readouterr().out
    assert md.read_text().strip() in printed
    for path in (png, svg, md):
        assert f"wrote {path}" in printed


def test_grouping_ignores_seed_and_bookkeeping(multirun: Path) -> None:
    runs = [load_run(p) for p in find_runs([multirun])]
    assert len(runs) == 6
    groups = group_runs(runs)
    assert [g.label for g in groups] == [
        f"optimizer.critic_lr={LR_SLOW}",
        f"optimizer.critic_lr={LR_FAST}",
    ]
    for group in groups:
        assert group.env_id == "Pendulum-v1"
        assert [r.seed for r in group.runs] == list(SEEDS)


def test_truncated_last_line_is_skipped(multirun: Path) -> None:
    killed = next(
        r
        for r in map(load_run, find_runs([multirun]))
        if r.seed == 2 and r.overrides["optimizer.critic_lr"] == LR_FAST
    )
    assert killed.steps.tolist() == EVAL_STEPS
    assert killed.values[-1] == pendulum_return(LR_FAST, 2, EVAL_STEPS[-1])
    assert "train/episode_return" in killed.metrics


def test_single_run_dir_writes_next_to_it(tmp_path: Path, capsys) -> None:
    rows = [{"step": s, "train/episode_return": -float(s)} for s in (200, 400, 600)]
    run = write_run(tmp_path / "run", "Pendulum-v1", [], 0, rows)
    assert plot.main([str(run), "--metric", "train/episode_return"]) == 0
    assert (run / "learning_curves.png").is_file() and (run / "learning_curves.svg").is_file()
    rows_ = table_rows((run / "results.md").read_text())
    # one seed, no overrides: the group is the default config, and there is no CI
    assert rows_[("Pendulum-v1", "default config")][2:6] == ["1", "600", "-600.0", "n/a (1 seed)"]
    capsys.readouterr()


def test_align_interpolates_onto_the_shared_range() -> None:
    def run(steps):
        steps = np.array(steps)
        return Run(Path("."), "E", {}, 0, steps, 2.0 * steps)

    grid, values = align([run([0, 10, 20, 30]), run([0, 15, 25])])
    assert grid.tolist() == [0, 10, 15, 20, 25]  # union, cut at the shorter run's end
    np.testing.assert_allclose(values, np.stack([2.0 * grid, 2.0 * grid]))


def test_bootstrap_ci() -> None:
    x = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [4.0, 10.0]])
    mean, low, high = bootstrap_ci(x)
    np.testing.assert_allclose(mean, [2.5, 10.0])
    assert 1.0 <= low[0] < 2.5 < high[0] <= 4.0
    assert low[1] == pytest.approx(10.0) and high[1] == pytest.approx(10.0)
    again = bootstrap_ci(x)
    np.testing.assert_array_equal(again[1], low)  # fixed rng seed: reproducible
    mean, low, high = bootstrap_ci(np.array([5.0]))
    assert mean == 5.0 and np.isnan(low) and np.isnan(high)


def test_bootstrap_difference_ci() -> None:
    a, b = np.array([10.0, 11.0, 12.0, 13.0]), np.array([1.0, 2.0, 3.0])
    diff, low, high = bootstrap_difference_ci(a, b)
    assert diff == pytest.approx(9.5)
    # The resampled means stay inside each side's range: 10 - 3 <= difference <= 13 - 1.
    assert 7.0 <= low < 9.5 < high <= 12.0
    assert bootstrap_difference_ci(a, b) == (diff, low, high)  # fixed rng seed
    # A constant offset between equal spreads moves the interval and nothing else.
    shifted = bootstrap_difference_ci(a + 100.0, b)
    assert shifted == pytest.approx((diff + 100.0, low + 100.0, high + 100.0))
    diff, low, high = bootstrap_difference_ci(np.array([5.0]), b)
    assert diff == 3.0 and np.isnan(low) and np.isnan(high)


def test_permutation_p_exact() -> None:
    # Completely separated samples of 4 and 4: only the observed split and its mirror image
    # are that extreme, out of C(8, 4) = 70 relabellings.
    a, b = np.array([10.0, 11.0, 12.0, 13.0]), np.array([1.0, 2.0, 3.0, 4.0])
    assert permutation_p(a, b) == (pytest.approx(2 / 70), 70)
    assert permutation_p(b, a) == (pytest.approx(2 / 70), 70)  # two-sided
    # Equal samples: every relabelling is at least as far apart as the observed zero.
    assert permutation_p(a, a.copy())[0] == 1.0
    # By hand for a = [0, 3], b = [1, 2]: |mean difference| 0 for the observed split, which
    # all 6 splits reach.
    assert permutation_p(np.array([0.0, 3.0]), np.array([1.0, 2.0])) == (1.0, 6)
    # a = [0, 1], b = [2, 3]: |difference| 2; splits {0,1}|{2,3} and {2,3}|{0,1} reach it.
    assert permutation_p(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == (
        pytest.approx(2 / 6),
        6,
    )


def test_permutation_p_sampled_agrees_with_exact() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.0, 1.0, 7), rng.normal(1.0, 1.0, 7)
    exact, splits = permutation_p(a, b)
    assert splits == 3432  # C(14, 7)
    sampled, used = permutation_p(a, b, max_splits=3000)
    assert used == 3001  # the observed relabelling counted in
    assert sampled == pytest.approx(exact, abs=0.03)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such directory"),
        ("empty", "no metrics.jsonl found"),
        ("metric", "metrics present: eval/return_mean, eval/return_std, train/episode_return"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    case: str, message: str, multirun: Path, tmp_path: Path, capsys
) -> None:
    argv = {
        "missing": [str(tmp_path / "nope")],
        "empty": [str(tmp_path / "empty")],
        "metric": [str(multirun), "--metric", "eval/success_rate"],
    }[case]
    (tmp_path / "empty").mkdir()
    assert plot.main([*argv, "-o", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sac-plot: error: ")
    assert message in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not (tmp_path / "out" / "results.md").exists()


def test_curves_are_named_by_what_differs_and_short_runs_warned(tmp_path: Path, capsys) -> None:
    shared = ["eval.every=1000", "network=small", "total_steps=8000"]
    rows = [{"step": s, "eval/return_mean": -float(s)} for s in (1000, 2000)]
    for lr in ("0.001", "0.0003"):
        write_run(tmp_path / lr, "Pendulum-v1", [*shared, f"optimizer.critic_lr={lr}"], 0, rows)
    write_run(tmp_path / "short", "Hopper-v4", shared, 0, rows[:1])
    groups = group_runs([load_run(p) for p in find_runs([tmp_path])])
    # Shared overrides name nothing; a panel's lone curve keeps its own.
    assert [g.label for g in groups] == [
        ", ".join(shared), "optimizer.critic_lr=0.0003", "optimizer.critic_lr=0.001"]
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text, to be read back
        assert plot.main([str(tmp_path)]) == 0
    svg = (tmp_path / "learning_curves.svg").read_text()
    assert "evaluation return (mean over episodes)" in svg  # the y axis, in words
    assert "optimizer.critic_lr=0.001" in svg  # the legend
    err = capsys.readouterr().err
    assert f"{tmp_path / 'short'} has only one value of 'eval/return_mean'" in err
    assert "raise total_steps or lower eval.every" in err
    table = table_rows((tmp_path / "results.md").read_text())
    assert ("Pendulum-v1", "optimizer.critic_lr=0.001") in table  # the legend's names



def test_scipy_statistics_reproduce_the_published_learning_figures() -> None:
    """The figures in README and benchmarks/results/, made with the hand-written statistics
    before scipy.stats took over, come out again: exactly where they were exact (the means,
    the exact permutation p-values), to Monte-Carlo error for the bootstrap bounds."""
    pendulum = np.array([-155.5, -195.5, -205.8, -141.5, -156.9])  # pendulum-15k.md
    mean, low, high = bootstrap_ci(pendulum)
    assert round(float(mean), 1) == -171.0
    assert float(low) == pytest.approx(-191.9, abs=3.0)
    assert float(high) == pytest.approx(-150.2, abs=3.0)
    ours = np.array([4476.5, 4842.8, 4685.6, 5682.8, 5668.2, 5391.7, 5230.1])  # README
    sb3 = np.array([5896.8, 4798.5, 4442.7, 5623.1, 5406.2, 3802.9, 3857.1])
    diff, low, high = bootstrap_difference_ci(ours, sb3)
    assert round(diff) == 307
    assert low == pytest.approx(-367, abs=60) and high == pytest.approx(973, abs=60)
    p, splits = permutation_p(ours, sb3)
    assert (round(p, 2), splits) == (0.41, 3432)
    p, splits = permutation_p(ours[3:], sb3[3:])  # halfcheetah-100k-seeds3-6.md
    assert (round(p, 3), splits) == (0.229, 70)
