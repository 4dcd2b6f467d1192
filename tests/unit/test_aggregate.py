"""sac-plot --aggregate on synthetic runs with known answers, through the real rliable: IQM,
mean, optimality gap, probability of improvement and performance profiles computed by hand;
normalised scores from the score table; one line for every input rliable cannot take."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from helpers.runs import write_final_return
from scipy import stats

pytest.importorskip("rliable", reason="--aggregate needs pip install 'sac-cli[reports]'")

from sac_cli.cli import plot  # noqa: E402
from sac_cli.errors import UserError  # noqa: E402
from sac_cli.reporting import aggregate, scores  # noqa: E402

REPS = ["--reps", "200"]
# Normalised final scores of agent=sac's four seeds per task; agent=sac_v1 scores 1 less.
SAC = {"HalfCheetah-v4": [0.0, 0.1, 0.2, 0.3], "Hopper-v4": [0.4, 0.5, 0.6, 3.0]}
# By hand over the eight scores 0, .1, .2, .3, .4, .5, .6, 3:
SAC_IQM = (0.2 + 0.3 + 0.4 + 0.5) / 4  # the middle half
SAC_MEAN = 5.1 / 8
SAC_GAP = (1 + 0.9 + 0.8 + 0.7 + 0.6 + 0.5 + 0.4 + 0) / 8  # mean shortfall below 1
# P(sac > sac_v1): HalfCheetah 16 of 16 pairs; Hopper 4 (3.0 beats all) + 3 x 3 of 16.
IMPROVEMENT = (1 + 13 / 16) / 2


def d4rl_return(task: str, normalised: float) -> float:
    # D4RL's random and expert returns, written out: the table must say the same.
    random, expert = {"HalfCheetah-v4": (-280.178953, 12135.0),
                      "Hopper-v4": (-20.272305, 3234.3)}[task]
    return random + normalised * (expert - random)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for task, values in SAC.items():
        for seed, value in enumerate(values):
            write_final_return(root, task, ["agent=sac"], seed, d4rl_return(task, value))
            write_final_return(root, task, ["agent=sac_v1"], seed, d4rl_return(task, value - 1))
    return root


def read_csv(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open() as f:
        return {(row["statistic"], row["group"]): row for row in csv.DictReader(f)}


def test_normalised_aggregates_match_the_hand_computed_values(sweep: Path, tmp_path: Path,
                                                               capsys):
    out = tmp_path / "report"
    assert plot.main([str(sweep), "--aggregate", "--normalize", "-o", str(out), *REPS]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(["aggregate.csv", "aggregate.md"] + [
        f"aggregate_{name}.{ext}" for name in ("intervals", "profiles", "improvement")
        for ext in ("png", "svg")])
    rows = read_csv(out / "aggregate.csv")
    expected = {
        ("IQM", "agent=sac"): SAC_IQM, ("mean", "agent=sac"): SAC_MEAN,
        ("optimality gap", "agent=sac"): SAC_GAP,
        ("IQM", "agent=sac_v1"): SAC_IQM - 1, ("mean", "agent=sac_v1"): SAC_MEAN - 1,
        ("probability of improvement", "agent=sac > agent=sac_v1"): IMPROVEMENT,
    }
    for key, value in expected.items():
        row = rows[key]
        assert float(row["estimate"]) == pytest.approx(value, abs=1e-9), key
        assert float(row["ci_low"]) <= value <= float(row["ci_high"]), key
        assert row["score"] == "normalized"
    # The Markdown says the same numbers (4 significant digits) and where the CIs come from.
    markdown = (out / "aggregate.md").read_text()
    assert "| IQM | agent=sac | 0.35 |" in markdown and "stratified bootstrap" in markdown
    assert "| probability of improvement | agent=sac > agent=sac_v1 | 0.9062 |" in markdown
    assert markdown in capsys.readouterr().out


def test_raw_scores_give_iqm_and_mean_of_the_returns_and_no_gap(sweep: Path, tmp_path: Path):
    out = tmp_path / "raw"
    assert plot.main([str(sweep), "--aggregate", "-o", str(out), *REPS]) == 0
    rows = read_csv(out / "aggregate.csv")
    returns = [d4rl_return(task, v) for task, values in SAC.items() for v in values]
    assert float(rows[("IQM", "agent=sac")]["estimate"]) == pytest.approx(
        stats.trim_mean(returns, 0.25))
    assert float(rows[("mean", "agent=sac")]["estimate"]) == pytest.approx(np.mean(returns))
    assert not any(statistic == "optimality gap" for statistic, _ in rows)
    assert {row["score"] for row in rows.values()} == {"raw"}


def test_identical_runs_have_a_ci_of_one_point_and_profiles_count_runs(sweep: Path):
    table = aggregate.score_table(plot.load_runs([str(sweep)], "eval/return_mean"), True)
    assert table.tasks == ["HalfCheetah-v4", "Hopper-v4"]
    np.testing.assert_allclose(table.scores["agent=sac"], np.array(list(SAC.values())).T)
    constant = aggregate.ScoreTable(table.tasks, {"flat": np.full((3, 2), 0.5)}, True)
    iqm = aggregate.interval_estimates(constant, reps=200)["IQM"]["flat"]
    assert (iqm.estimate, iqm.low, iqm.high) == (0.5, 0.5, 0.5)
    profiles, _ = aggregate.performance_profiles(table, np.array([0.45, 2.5]), reps=200)
    # Runs above 0.45: sac 0.5, 0.6, 3 of 8; sac_v1 only 2.0 above 0.45, none above 2.5.
    np.testing.assert_allclose(profiles["agent=sac"], [3 / 8, 1 / 8])
    np.testing.assert_allclose(profiles["agent=sac_v1"], [1 / 8, 0])


def test_score_table_normalises_with_its_sources():
    assert scores.normalize("HalfCheetah-v5", np.array([-280.178953, 12135.0])).tolist() == [0, 1]
    assert scores.normalize("dm_control/cheetah-run-v0", np.array([250.0])).tolist() == [0.25]
    assert "D4RL" in scores.reference_scores("Walker2d-v4").source
    with pytest.raises(UserError, match="Humanoid-v4"):
        scores.reference_scores("Humanoid-v4")


@pytest.mark.parametrize(
    ("case", "args", "words"),
    [
        ("normalize-alone", ["--normalize"], ["--normalize", "--aggregate"]),
        ("few-reps", ["--aggregate", "--reps", "10"], ["--reps 10"]),
        ("no-reference", ["--aggregate", "--normalize"], ["Humanoid-v4", "leave out --normalize"]),
        ("uneven-seeds", ["--aggregate"], ["agent=sac", "same number of seeds"]),
        ("missing-task", ["--aggregate"], ["agent=sac_v1", "has no run of Hopper-v4"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(sweep: Path, tmp_path: Path, capsys,
                                                  case: str, args: list[str], words: list[str]):
    if case == "no-reference":
        for seed in range(4):
            for group in ("agent=sac", "agent=sac_v1"):
                write_final_return(sweep, "Humanoid-v4", [group], seed, 5000.0)
    elif case == "uneven-seeds":
        write_final_return(sweep, "Hopper-v4", ["agent=sac"], 9, 100.0)
    elif case == "missing-task":
        for run in sweep.glob("Hopper-v4-agent=sac_v1-*"):
            for path in sorted(run.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            run.rmdir()
    out = tmp_path / "report"
    assert plot.main([str(sweep), "-o", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sac-plot: error: "), err
    assert all(word in err[0] for word in words), err[0]
    assert not out.exists()
