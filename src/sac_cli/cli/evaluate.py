"""`sac-eval`: load a checkpoint, rebuild its environment and networks, run episodes, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from sac_cli.cli.eval_config import EvalCommandConfig, register_eval_configs, validate_eval
from sac_cli.cli.loading import (
    checkpoint_command,
    env_id_to_evaluate,
    load_policy,
    require_checkpoint,
    train_config_of,
)
from sac_cli.device import resolve_device
from sac_cli.envs.make import make_env
from sac_cli.envs.video import check_video_support, prepare_offscreen_rendering
from sac_cli.files import atomic_write_text
from sac_cli.seeding import eval_seeds
from sac_cli.training import checkpoint as ckpt
from sac_cli.training.evaluation import VIDEO_DIR, EvalResult, evaluate, record_episodes
from sac_cli.training.progress import plural

PROG = "sac-eval"

register_eval_configs()


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
    path = ckpt.resolve_checkpoint(require_checkpoint(cfg.checkpoint)).resolve()
    out_dir = Path(cfg.out).expanduser().resolve() if cfg.out else ckpt.run_dir_of(path)
    device = resolve_device(cfg.device)
    state = ckpt.load(path, map_location=device)
    train_cfg = train_config_of(state, path)
    env_id = env_id_to_evaluate(cfg.env_id, state, path, PROG)
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


main = checkpoint_command("eval", PROG, run_eval)


if __name__ == "__main__":
    main()
