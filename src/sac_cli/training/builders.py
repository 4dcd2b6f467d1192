"""The parts of a training run, built from its config and handed to the Trainer: the
environment, a separate evaluation environment, the agent, the engine that updates it, the
replay buffer, the checkpoints and the logger (the TD-MPC2 way: each part testable alone,
the loop given its parts)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from sac_cli.agents.base import SoftActorCritic
from sac_cli.agents.registry import build_agent
from sac_cli.config import TrainConfig
from sac_cli.device import keep_freed_memory
from sac_cli.envs.make import env_dims, make_env
from sac_cli.envs.video import check_video_support, prepare_offscreen_rendering
from sac_cli.seeding import seed_everything
from sac_cli.training.compilation import CompileChoice, choose_compile, planned_updates
from sac_cli.training.logger import MetricAccumulator, RunLogger
from sac_cli.training.loop import Trainer
from sac_cli.training.replay import ReplayBuffer
from sac_cli.training.resume import Checkpoints
from sac_cli.training.update import UpdateEngine, branch_threads_by_default


@dataclass
class Parts:
    env: gym.Env
    eval_env: gym.Env
    agent: SoftActorCritic
    engine: UpdateEngine
    buffer: ReplayBuffer
    first_obs: np.ndarray  # the environment's first observation, after seeding
    obs_dim: int
    act_dim: int
    compile_choice: CompileChoice


def build_parts(cfg: TrainConfig, device: torch.device, shares_cores: bool = False) -> Parts:
    """shares_cores: other jobs of a sweep run beside this one (no branch threads)."""
    compile_choice = choose_compile(cfg.compile, device, planned_updates(cfg))
    video = cfg.eval.video and cfg.eval.episodes > 0
    if video:
        prepare_offscreen_rendering()  # before mujoco is imported
    env = make_env(cfg.env.id)
    eval_env = make_env(cfg.env.id, step_limit=cfg.eval.max_episode_steps)
    if video:
        check_video_support(cfg.env.id)
    obs_dim, act_dim = env_dims(env)
    ReplayBuffer.check_fits(cfg.agent.buffer_size, obs_dim, act_dim, device, "agent.buffer_size")
    # Seed before building the networks: their initial weights come from torch's generator.
    first_obs = seed_everything(cfg.seed, env)
    if device.type == "cpu":
        keep_freed_memory()
    agent = build_agent(cfg, obs_dim, act_dim, device)
    threads = branch_threads_by_default(device, shares_cores)
    engine = UpdateEngine(agent, device, threads, compile_choice.on, compile_choice.fall_back)
    buffer = ReplayBuffer(cfg.agent.buffer_size, obs_dim, act_dim, device, cfg.seed)
    return Parts(env, eval_env, agent, engine, buffer, first_obs, obs_dim, act_dim, compile_choice)


def build_trainer(
    cfg: TrainConfig,
    run_dir: Path,
    parts: Parts,
    config_dict: dict[str, Any],
    progress_style: tuple[str, bool] = ("", True),
) -> Trainer:
    """The trainer of `parts` in `run_dir`. config_dict: the resolved config, as saved in
    checkpoints and given to W&B."""
    checkpoints = Checkpoints(run_dir, parts, MetricAccumulator(), config_dict, cfg.env.id)
    log = cfg.logger
    open_logger = functools.partial(
        RunLogger, run_dir, config_dict, log.mode.value, log.project, log.group, log.name,
        log.tensorboard,
    )  # fmt: skip
    return Trainer(cfg, parts, checkpoints, open_logger, progress_style)
