"""The `agent` config group's options: a name -> the class that implements it."""

from __future__ import annotations

import torch

from sac_cli.config import AgentName, TrainConfig
from sac_cli.sac import SAC, SoftActorCritic
from sac_cli.sac_v1 import SACv1

AGENTS: dict[AgentName, type[SoftActorCritic]] = {AgentName.sac: SAC, AgentName.sac_v1: SACv1}


def build_agent(
    cfg: TrainConfig, obs_dim: int, act_dim: int, device: torch.device
) -> SoftActorCritic:
    with torch.device(device):
        return AGENTS[cfg.agent.name](
            obs_dim, act_dim, cfg.agent, cfg.network, cfg.optimizer, cfg.temperature
        )
