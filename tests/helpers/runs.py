"""Synthetic sac-train run directories for the reporting tests: a .hydra/ record and a
metrics.jsonl whose final evaluation return is chosen by the test."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def write_final_return(root: Path, env_id: str, overrides: list[str], seed: int,
                       final: float) -> Path:
    """A run of `env_id` with `overrides` and `seed` whose last eval/return_mean is `final`
    (an earlier evaluation logs something else, so that only the last one counts)."""
    run_dir = root / f"{env_id.replace('/', '_')}-{'-'.join(overrides) or 'default'}-seed{seed}"
    (run_dir / ".hydra").mkdir(parents=True)
    rows = [{"step": 1000, "eval/return_mean": final - 1234.5},
            {"step": 2000, "train/episode_return": final + 99.0},
            {"step": 2000, "eval/return_mean": final}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"env": {"id": env_id}, "seed": seed}
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    all_overrides = [f"env.id={env_id}", *overrides, f"seed={seed}"]
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(all_overrides))
    return run_dir
