"""The schema of `sac-eval` (conf/eval.yaml), registered in Hydra's ConfigStore."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from sac_cli.errors import UserError


@dataclass
class EvalCommandConfig:
    # A checkpoint file, or a run directory of sac-train (its checkpoints/last.pt).
    checkpoint: str | None = None
    episodes: int = 10
    # Sample actions from the policy instead of taking its mean.
    stochastic: bool = False
    # null: the training seed, so that the episodes are those of the training's evaluation
    # at the checkpoint's step.
    seed: int | None = None
    device: str = "auto"
    # null: the checkpoint's environment; another id must have the same observation and
    # action sizes (e.g. HalfCheetah-v5 for a HalfCheetah-v4 policy).
    env_id: str | None = None
    # Record every episode as an MP4 under <out>/videos/.
    video: bool = False
    # Where eval-<checkpoint>-step-<step>.json and videos/ go; null: the checkpoint's run directory.
    out: str | None = None


def register_eval_configs() -> None:
    ConfigStore.instance().store(name="eval_schema", node=EvalCommandConfig)


def validate_eval(cfg: EvalCommandConfig) -> None:
    if cfg.episodes <= 0:
        raise UserError(f"episodes={cfg.episodes} must be positive")
    if cfg.seed is not None and cfg.seed < 0:
        raise UserError(f"seed={cfg.seed} must be zero or more (or null: the training seed)")
