"""A checkpoint's policy, rebuilt for sac-eval and sac-export: its embedded config held to
the command line's schema and checks (a checkpoint is data, never trusted), its weights'
shapes compared on the meta device before anything real is built."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sac_cli.agents.base import SoftActorCritic
from sac_cli.agents.registry import build_agent
from sac_cli.cli.errors import exit_on_user_error, run_cli
from sac_cli.config import TrainConfig, schema_of, upgrade_saved_config, validate
from sac_cli.envs.make import env_dims
from sac_cli.errors import UserError


def train_config_of(state: dict[str, Any], path: Path) -> TrainConfig:
    """The TrainConfig the checkpoint was trained with (its own resolved config), held to the
    same schema and checks as the command line: a checkpoint is data, never trusted."""
    try:
        saved = upgrade_saved_config(state["config"])
        merged = OmegaConf.merge(schema_of(saved), saved)
        cfg: TrainConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
        validate(cfg)
    except (OmegaConfBaseException, ValueError, TypeError, UserError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        key = getattr(error, "full_key", None)
        raise UserError(
            f"{path}: its config does not fit this version of sac-cli "
            f"({f'{key}: ' if key else ''}{first[:160]})"
        ) from None
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise UserError(f"{path}: its step ({step!r}) is not a count of steps: it is damaged")
    return cfg


def check_weight_shapes(cfg: TrainConfig, state: dict[str, Any], path: Path, dims) -> None:
    """Compare the checkpoint's tensors with the networks its config describes, built on the
    meta device (no memory), before building anything for real."""
    expected = build_agent(cfg, *dims, torch.device("meta")).state_dict()
    weights = state["agent"]
    if not isinstance(weights, dict):
        raise UserError(f"{path}: it holds no network weights")
    for key, tensor in expected.items():
        found = weights.get(key)
        if not isinstance(found, torch.Tensor) or found.shape != tensor.shape:
            got = tuple(found.shape) if isinstance(found, torch.Tensor) else "nothing"
            raise UserError(
                f"{path}: its weights do not fit the networks of its config ({key}: "
                f"{got} in the file, {tuple(tensor.shape)} expected)"
            )


def load_policy(
    state: dict[str, Any], path: Path, env, device: torch.device, env_id: str
) -> SoftActorCritic:
    cfg = train_config_of(state, path)
    cfg.compile = False  # it compiles the update only, which evaluation never runs
    obs_dim, act_dim = env_dims(env)
    if (obs_dim, act_dim) != (state["obs_dim"], state["act_dim"]):
        raise UserError(
            f"{path} was trained on {state['env_id']} (observation size {state['obs_dim']}, "
            f"action size {state['act_dim']}); {env_id} has {obs_dim} and {act_dim}: "
            "evaluate it on its own environment"
        )
    check_weight_shapes(cfg, state, path, (obs_dim, act_dim))
    agent = build_agent(cfg, obs_dim, act_dim, device)
    try:
        agent.load_state_dict(state["agent"])
    except (RuntimeError, KeyError, TypeError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = next((line for line in lines if line.startswith("size mismatch")), None)
        raise UserError(
            f"{path}: its weights do not fit the networks of its config "
            f"({(detail or (lines[0] if lines else type(error).__name__))[:200]})"
        ) from None
    agent.eval()
    return agent


def env_id_to_evaluate(
    env_id: str | None, state: dict[str, Any], path: Path, prog: str
) -> str:
    """env_id= if given, else the checkpoint's; a `module:Env-v0` id imports its module, so
    one named only by the checkpoint (data) is not imported unless the user names it."""
    if env_id:
        return env_id
    env_id = str(state["env_id"])
    if ":" in env_id:
        raise UserError(
            f"{path} was trained on {env_id}, whose module {prog} imports only when you "
            f"name it yourself: pass env_id={env_id}"
        )
    return env_id


def require_checkpoint(checkpoint: str | None) -> str:
    if not checkpoint:
        raise UserError(
            "no checkpoint given: pass checkpoint=<a .pt file or a run directory of sac-train>"
        )
    return checkpoint


def checkpoint_command(config_name: str, prog: str, run: Callable[[Any], object]):
    """The console script of a command over a checkpoint (sac-eval, sac-export): Hydra
    composes conf/<config_name>.yaml, `run` gets the schema's object, bad input is one line."""

    @hydra.main(version_base="1.3", config_path="pkg://sac_cli.conf", config_name=config_name)
    @exit_on_user_error(prog)
    def hydra_main(cfg: DictConfig) -> None:
        run(OmegaConf.to_object(cfg))

    def main() -> None:
        run_cli(hydra_main, prog)

    return main
