"""Updates of an agent as training runs them: through the update engine, one per agent."""

from __future__ import annotations

import weakref

import torch

from sac_cli.agents.sac import SAC
from sac_cli.config import (
    AgentConfig,
    AgentName,
    NetworkConfig,
    OptimizerConfig,
    TemperatureConfig,
    TemperatureMode,
)
from sac_cli.training.replay import Batch
from sac_cli.training.update import Metrics, UpdateEngine

_engines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def engine_of(agent, **options) -> UpdateEngine:
    """The agent's engine (one thread, eager, on the CPU unless `options` say otherwise),
    made at its first update and kept for the next ones: its optimizers hold Adam's moments."""
    if agent not in _engines:
        options = {"device": torch.device("cpu"), "branch_threads": False, **options}
        _engines[agent] = UpdateEngine(agent, **options)
    return _engines[agent]


def update(agent, batch) -> Metrics:
    return engine_of(agent).update(batch)


def random_batch(seed: int, obs_dim: int, act_dim: int, size: int) -> Batch:
    """A batch of random transitions, none terminal, the same for the same seed."""
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(size, obs_dim, generator=g),
        actions=torch.rand(size, act_dim, generator=g) * 2 - 1,
        rewards=torch.randn(size, generator=g),
        next_obs=torch.randn(size, obs_dim, generator=g),
        terminated=torch.zeros(size),
    )


def tiny_sac(obs_dim: int, act_dim: int, **agent_cfg) -> SAC:
    """SAC with one 8-unit hidden layer and a learned temperature, its weights from seed 0."""
    torch.manual_seed(0)
    return SAC(obs_dim, act_dim, AgentConfig(name=AgentName.sac, **agent_cfg),
               NetworkConfig(hidden_sizes=[8]), OptimizerConfig(),
               TemperatureConfig(mode=TemperatureMode.auto))  # fmt: skip
