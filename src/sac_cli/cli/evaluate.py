"""`sac-eval`: load a checkpoint, rebuild its environment and networks, run episodes, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sac_cli.agents.registry import AGENTS, build_agent
from sac_cli.cli.errors import exit_on_user_error, run_cli
from sac_cli.cli.eval_config import EvalCommandConfig, register_eval_configs, validate_eval
from sac_cli.config import TrainConfig, schema_of, upgrade_saved_config, validate
from sac_cli.device import resolve_device
from sac_cli.envs.make import env_dims, make_env
from sac_cli.envs.video import check_video_support, prepare_offscreen_rendering
from sac_cli.errors import UserError
from sac_cli.files import atomic_write_text
from sac_cli.seeding import eval_seeds
from sac_cli.training import checkpoint as ckpt
from sac_cli.training.evaluation import VIDEO_DIR, EvalResult, evaluate, record_episodes
from sac_cli.training.progress import plural

PROG = "sac-eval"

register_eval_configs()


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
    with torch.device("meta"):
        expected = AGENTS[cfg.agent.name](
            *dims, cfg.agent, cfg.network, cfg.optimizer, cfg.temperature
        ).state_dict()
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


def load_policy(state: dict[str, Any], path: Path, env, device: torch.device, env_id: str):
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


def env_id_to_evaluate(cfg: EvalCommandConfig, state: dict[str, Any], path: Path) -> str:
    """env_id= if given, else the checkpoint's; a `module:Env-v0` id imports its module, so
    one named only by the checkpoint (data) is not imported unless the user names it."""
    if cfg.env_id:
        return cfg.env_id
    env_id = str(state["env_id"])
    if ":" in env_id:
        raise UserError(
            f"{path} was trained on {env_id}, whose module sac-eval imports only when you "
            f"name it yourself: pass env_id={env_id}"
        )
    return env_id


def print_table(result: EvalResult, seeds: list[int], header: str) -> None:
    print(header)
    print(f"{'episode':>7}  {'seed':>10}  {'return':>12}  {'length':>6}")
    for i, (seed, ret, length) in enumerate(
        zip(seeds, result.returns, result.lengths, strict=True)
    ):
        print(f"{i:>7}  {seed:>10}  {ret:>12.2f}  {length:>6}")
    print(f"{'mean':>7}  {'':>10}  {result.return_mean:>12.2f}  "
          f"{sum(result.lengths) / len(result.lengths):>6.0f}")
    print(f"{'std':>7}  {'':>10}  {result.return_std:>12.2f}")


def result_name(path: Path, step: int, cfg: EvalCommandConfig) -> str:
    """What names an evaluation's results (eval-<name>.json, videos): the checkpoint and its
    step, and how it was evaluated, so that evaluating another checkpoint keeps this one."""
    name = f"{path.stem}-step-{step}" + ("-stochastic" if cfg.stochastic else "")
    return name if cfg.seed is None else f"{name}-seed-{cfg.seed}"


def run_eval(cfg: EvalCommandConfig) -> dict[str, Any]:
    validate_eval(cfg)
    if cfg.video:
        prepare_offscreen_rendering()  # before mujoco is imported
    path = ckpt.resolve_checkpoint(cfg.checkpoint).resolve()
    out_dir = Path(cfg.out).expanduser().resolve() if cfg.out else ckpt.run_dir_of(path)
    device = resolve_device(cfg.device)
    state = ckpt.load(path, map_location=device)
    train_cfg = train_config_of(state, path)
    env_id = env_id_to_evaluate(cfg, state, path)
    # Fail before running episodes when the results could not be written.
    ckpt.check_writable(out_dir)
    step_limit = train_cfg.eval.max_episode_steps
    env = make_env(env_id, step_limit=step_limit)
    try:
        agent = load_policy(state, path, env, device, env_id)
        seed = train_cfg.seed if cfg.seed is None else cfg.seed
        step = int(state["step"])
        # Seeds derived as in training: with seed=null and episodes=eval.episodes, the same
        # episodes as the training's evaluation at this step.
        seeds = eval_seeds(seed, step, cfg.episodes)
        torch.manual_seed(seed)  # the stochastic policy's samples
        deterministic = not cfg.stochastic
        videos: list[Path] = []
        name = result_name(path, step, cfg)
        if cfg.video:
            check_video_support(env_id)
            result, videos = record_episodes(
                agent, env_id, seeds, out_dir / VIDEO_DIR, name, deterministic, step_limit
            )
        else:
            result = evaluate(agent, env, seeds, deterministic)
    finally:
        env.close()
    report = {
        "return_mean": result.return_mean,
        "return_std": result.return_std,
        "returns": result.returns,
        "lengths": result.lengths,
        "env_id": env_id,
        "step": step,
        "checkpoint": str(path),
        "episodes": cfg.episodes,
        "seed": seed,
        "seeds": seeds,
        "deterministic": deterministic,
        "videos": [str(video) for video in videos],
    }
    out = out_dir / f"eval-{name}.json"
    atomic_write_text(json.dumps(report, indent=2) + "\n", out)
    mode = "stochastic" if cfg.stochastic else "deterministic"
    print_table(
        result,
        seeds,
        f"{path} | {env_id} | step {step} | {mode} policy | seed {seed} | {device}",
    )
    videos_note = f" and {plural(len(videos), 'video')} in {out_dir / VIDEO_DIR}" if videos else ""
    print(f"wrote {out}{videos_note}")
    return report


@hydra.main(version_base="1.3", config_path="pkg://sac_cli.conf", config_name="eval")
@exit_on_user_error(PROG)
def _hydra_main(cfg: DictConfig) -> None:
    config: EvalCommandConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    run_eval(config)


def main() -> None:
    run_cli(_hydra_main, PROG)


if __name__ == "__main__":
    main()
