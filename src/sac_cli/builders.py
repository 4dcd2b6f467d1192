"""The parts of a training run, built from its config and handed to the Trainer: the
environment, a separate evaluation environment, the agent, the engine that updates it and
the replay buffer (the TD-MPC2 way: each part testable alone, the loop given its parts)."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from sac_cli.agents import build_agent
from sac_cli.config import TrainConfig
from sac_cli.envs import env_dims, make_env
from sac_cli.evaluation import check_video_support, prepare_offscreen_rendering
from sac_cli.replay import ReplayBuffer
from sac_cli.sac import SoftActorCritic
from sac_cli.seeding import seed_everything
from sac_cli.update import UpdateEngine, branch_threads_by_default


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


def build_parts(cfg: TrainConfig, device: torch.device, shares_cores: bool = False) -> Parts:
    """shares_cores: other jobs of a sweep run beside this one (no branch threads)."""
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
    agent = build_agent(cfg, obs_dim, act_dim, device)
    threads = branch_threads_by_default(device, shares_cores)
    engine = UpdateEngine(agent, device, threads, cfg.compile)
    buffer = ReplayBuffer(cfg.agent.buffer_size, obs_dim, act_dim, device, cfg.seed)
    return Parts(env, eval_env, agent, engine, buffer, first_obs, obs_dim, act_dim)
