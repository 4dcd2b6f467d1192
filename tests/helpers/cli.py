"""Running the real command-line entry points as a user would, and reading what they write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

# A CUDA device that this machine does not have (bad-input tests pass on GPU machines too).
ABSENT_CUDA = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
ABSENT_CUDA_INDEX = f"cuda:{torch.cuda.device_count()}"


# Tiny settings that keep a Pendulum-v1 run to a few seconds on 2 CPU cores.
TINY = [
    "env=Pendulum-v1",
    "network.hidden_sizes=[32,32]",
    "total_steps=600",
    "learning_starts=200",
    "agent.batch_size=64",
    "eval.every=300",
    "eval.episodes=1",
    "checkpoint.every=200",
    "logger.every=100",
    "threads=1",
]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    env["WANDB_SILENT"] = "true"
    env["PYTHONWARNINGS"] = "ignore"
    # The test environments of tests/helpers/envs.py, as `env.id=helpers.envs:<id>`.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).parents[1]), env.get("PYTHONPATH")) if p
    )
    return env


def run_cli(
    command: str, *args: str, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run `sac-train`, `sac-eval` or `sac-plot` as a user would (the console script's module)."""
    module = {
        "sac-train": "sac_cli.cli.train",
        "sac-eval": "sac_cli.cli.evaluate",
        "sac-plot": "sac_cli.cli.plot",
        "sac-export": "sac_cli.cli.export",
    }
    return subprocess.run(
        [sys.executable, "-m", module[command], *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Keys of a metrics row that depend on the wall clock, not on what was learned.
WALL_CLOCK_KEYS = ("perf/sps", "time")


def without_wall_clock(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK_KEYS} for row in rows]


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
