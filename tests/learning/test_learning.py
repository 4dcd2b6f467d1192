"""benchmarks/learning.py: sac-cli against Stable-Baselines3 at equal steps, and the slow
Pendulum-v1 learning check of issue 6 (`make test-full`)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.cli import cli_env, read_metrics

from sac_cli.bench.learning.jobs import core_slots, pinned
from sac_cli.reporting.runs import find_runs, group_runs, load_run
from sac_cli.reporting.tables import fmt
from sac_cli.seeding import eval_seeds

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "learning.py"
HAVE_SB3 = importlib.util.find_spec("stable_baselines3") is not None

# Issue 6: Pendulum-v1 at 15k steps, mean final deterministic return at least -200.
PENDULUM_STEPS = 15000
PENDULUM_TARGET = -200.0


def run_benchmark(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def table_rows(markdown: str, env_id: str) -> dict[str, dict[str, str]]:
    """The rows of the table under `## env_id`, keyed by implementation, cells by header."""
    section = markdown.split(f"## {env_id}\n", 1)[1]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def eval_rows(run_dir: Path) -> dict[int, float]:
    return {
        r["step"]: r["eval/return_mean"] for r in read_metrics(run_dir) if "eval/return_mean" in r
    }


def test_learning_benchmark_table_matches_the_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = [
        "--env", "Pendulum-v1", "--steps", "400", "--seeds", "3", "--eval-every", "200",
        "--eval-episodes", "2", "--out", str(out), "--jobs", "2",
        "--set", "network.hidden_sizes=[16,16]", "--set", "learning_starts=100",
        "--set", "agent.batch_size=32",
    ]  # fmt: skip
    proc = run_benchmark(*args)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    assert (out / "learning_curves.png").stat().st_size > 1000
    assert (out / "learning_curves.svg").is_file()
    markdown = (out / "learning.md").read_text()
    assert markdown in proc.stdout  # the table is printed too
    rows = table_rows(markdown, "Pendulum-v1")
    impls = {"sac-cli": "sac-cli"}
    if HAVE_SB3:
        impls["Stable-Baselines3 SAC"] = "sb3"
    assert set(rows) == set(impls)

    for label, impl in impls.items():
        run_dir = out / "Pendulum-v1" / impl / "seed=3"
        evals = eval_rows(run_dir)
        assert sorted(evals) == [200, 400]
        row = rows[label]
        assert row["seeds"] == "1"
        assert row["final return"] == fmt(evals[400])
        assert row["best"] == fmt(max(evals.values()))
        assert row["@200"] == fmt(evals[200])
        assert row["@400"] == fmt(evals[400])
        assert f"3: {fmt(evals[400])} (step 400)" in markdown

    if HAVE_SB3:
        diff = eval_rows(out / "Pendulum-v1" / "sac-cli" / "seed=3")[400] - eval_rows(
            out / "Pendulum-v1" / "sb3" / "seed=3"
        )[400]
        assert (
            f"- sac-cli minus Stable-Baselines3 SAC, final return: {fmt(diff)}, "
            "95% bootstrap CI n/a (1 seed)" in markdown
        )
        assert "permutation p = 1.000 (two-sided, 2 relabellings)" in markdown

    if len(core_slots(2)) == 2:  # two runs at a time, each pinned to its own cores
        log = (out / "Pendulum-v1" / "sac-cli" / "seed=3" / "benchmark.log").read_text()
        assert "branches in parallel" not in log and "[start] sac-cli" in proc.stdout
        named = [f"seed=3 (cores {','.join(map(str, cores))})" for cores in core_slots(2)]
        assert any(name in proc.stdout for name in named)

    # The run directories are ordinary sac-plot input: one group per implementation.
    runs = [load_run(p) for p in find_runs([out])]
    assert {r.env_id for r in runs} == {"Pendulum-v1"} and {r.seed for r in runs} == {3}
    assert len(group_runs(runs)) == len(impls)

    if HAVE_SB3:
        sb3_dir = out / "Pendulum-v1" / "sb3" / "seed=3"
        assert yaml.safe_load((sb3_dir / ".hydra" / "overrides.yaml").read_text()) == [
            "impl=sb3",
            "seed=3",
        ]
        config = yaml.safe_load((sb3_dir / ".hydra" / "config.yaml").read_text())
        # The hyperparameters come from sac-cli's composed config with the same overrides.
        assert config["sb3"]["hidden_sizes"] == [16, 16]
        assert config["sb3"]["learning_starts"] == 100
        assert config["sb3"]["batch_size"] == 32
        ours_file = out / "Pendulum-v1" / "sac-cli" / "seed=3" / ".hydra" / "config.yaml"
        ours = yaml.safe_load(ours_file.read_text())
        assert config["sb3"]["learning_rate"] == ours["optimizer"]["actor_lr"]
        assert config["sb3"]["learning_starts"] == ours["learning_starts"]
        assert config["sb3"]["target_entropy"] == "auto" and config["sb3"]["tau"] == 0.005

    # A second call runs nothing that is complete and rewrites the same table.
    again = run_benchmark(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already complete") == len(impls)
    assert (out / "learning.md").read_text().split("## ")[1:] == markdown.split("## ")[1:]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_runs_side_by_side_get_cores_of_their_own() -> None:
    """Two runs at a time on two cores or more: disjoint core sets, and the command runs on
    its set only (so sac-train sees one core and uses one thread, no branch threads)."""
    cores = sorted(os.sched_getaffinity(0))
    assert core_slots(len(cores) + 1) == []  # more runs than cores: they share them all
    assert core_slots(1) == [tuple(cores)]
    if len(cores) < 2:
        pytest.skip("one core: nothing to split")
    first, second = core_slots(2)
    assert first and second and not set(first) & set(second)
    assert set(first) | set(second) <= set(cores)
    probe = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
    out = subprocess.run(pinned(probe, second), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(list(second))


@pytest.mark.skipif(not HAVE_SB3, reason="stable_baselines3 is not installed")
def test_sb3_evaluation_uses_sac_clis_episode_seeds(tmp_path: Path) -> None:
    """The SB3 worker evaluates on the episodes eval_seeds names: replaying its policy-free
    part (the initial states) shows the returns come from those resets."""
    run_dir = tmp_path / "sb3"
    run_dir.mkdir()
    spec = {
        "env_id": "Pendulum-v1",
        "seed": 5,
        "steps": 200,
        "eval_every": 200,
        "eval_episodes": 3,
        "run_dir": str(run_dir),
        "hyperparameters": {
            "learning_rate": 3e-4, "buffer_size": 1000, "learning_starts": 200,
            "batch_size": 32, "tau": 0.005, "gamma": 0.99, "train_freq": 1,
            "gradient_steps": 1, "target_update_interval": 1, "ent_coef": "auto_1.0",
            "target_entropy": "auto", "hidden_sizes": [8], "activation": "relu",
            "n_critics": 2,
        },
    }  # fmt: skip
    proc = run_benchmark("--sb3-worker", json.dumps(spec), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = [r for r in read_metrics(run_dir) if "eval/return_mean" in r]
    assert row["step"] == 200

    # No update has happened (learning_starts = steps): rebuild the same untrained policy
    # from SB3's seed and roll it out on the seeded episodes by hand.
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC

    torch.set_num_threads(1)
    hp = dict(spec["hyperparameters"])
    kwargs = {
        "net_arch": hp.pop("hidden_sizes"),
        "activation_fn": torch.nn.ReLU,
        "n_critics": hp.pop("n_critics"),
    }
    hp.pop("activation")
    model = SAC("MlpPolicy", gym.make("Pendulum-v1"), policy_kwargs=kwargs, seed=5, device="cpu",
                **hp)  # fmt: skip
    env = gym.make("Pendulum-v1")
    returns = []
    for s in eval_seeds(5, 200, 3):
        obs, _ = env.reset(seed=s)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(
                model.predict(obs, deterministic=True)[0]
            )
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    assert row["eval/return_mean"] == pytest.approx(np.mean(returns), rel=1e-6)
    assert row["eval/return_std"] == pytest.approx(np.std(returns), rel=1e-6)


def test_learning_benchmark_rejects_overrides_it_sets_itself(tmp_path: Path) -> None:
    proc = run_benchmark("--out", str(tmp_path), "--set", "seed=3", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "benchmarks/learning.py: error: --set seed=3: seed is set by the benchmark's own options"
    )


@pytest.mark.slow
def test_pendulum_learns_to_at_least_minus_200_in_15k_steps(tmp_path: Path) -> None:
    """Issue 6: sac-cli with its Pendulum-v1 defaults, through sac-train, 15k steps, two
    seeds in parallel (several minutes on 2 cores): mean final deterministic return over 10
    evaluation episodes at least -200."""
    out = tmp_path / "pendulum"
    proc = run_benchmark(
        "--env", "Pendulum-v1", "--steps", str(PENDULUM_STEPS), "--seeds", "0", "1",
        "--eval-every", "5000", "--out", str(out), "--jobs", "2", "--no-sb3",
        timeout=3600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    finals = []
    for seed in (0, 1):
        evals = eval_rows(out / "Pendulum-v1" / "sac-cli" / f"seed={seed}")
        assert sorted(evals) == [5000, 10000, 15000]
        finals.append(evals[PENDULUM_STEPS])
    assert np.mean(finals) >= PENDULUM_TARGET, f"final returns {finals}"
    assert re.search(r"\| sac-cli \| 2 \|", (out / "learning.md").read_text())
