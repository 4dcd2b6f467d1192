"""The `agent` config group's options: a name -> the class that implements it. A new
variant is a file in this folder, a schema in config.py, a conf/agent file and a line here."""

from __future__ import annotations

import torch

from sac_cli.agents.base import SoftActorCritic
from sac_cli.agents.normalizer import ObservationNormalizer
from sac_cli.agents.sac import SAC
from sac_cli.agents.sac_v1 import SACv1
from sac_cli.config import AgentName, TrainConfig

AGENTS: dict[AgentName, type[SoftActorCritic]] = {AgentName.sac: SAC, AgentName.sac_v1: SACv1}

def build_agent(
    cfg: TrainConfig, obs_dim: int, act_dim: int, device: torch.device
) -> SoftActorCritic:
    """The agent of cfg.agent.name on `device` (training.update.UpdateEngine runs its update)."""
    with torch.device(device):
        agent = AGENTS[cfg.agent.name](
            obs_dim, act_dim, cfg.agent, cfg.network, cfg.optimizer, cfg.temperature
        )
        if cfg.env.normalize_obs:
            agent.obs_normalizer = ObservationNormalizer(obs_dim)
    return agent
