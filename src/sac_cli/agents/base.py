"""What every SAC variant shares: the policy, the Q ensemble, the temperature, acting, the
policy's terms of the losses, and the declarations the update engine reads (`Schedule`,
`noise_draws`, loss branches, parameter groups, target pairs).

No I/O, no environment, no threads or compilation: an agent declares its two loss branches,
pure functions of the batch and of the reparameterisation noise (the critic's, eq. 7; the
policy's, eq. 12, with the temperature's and, in 2018a, V's), its parameter groups, its
target pairs and its schedule; the update engine (training/update.py) runs them. The
branches share no trained parameter and no graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sac_cli.agents.losses import policy_loss
from sac_cli.agents.networks import QEnsemble, TanhGaussianActor
from sac_cli.agents.normalizer import ObservationNormalizer
from sac_cli.agents.temperature import Temperature
from sac_cli.config import (
    AgentConfig,
    NetworkConfig,
    OptimizerConfig,
    TemperatureConfig,
    TemperatureMode,
)
from sac_cli.types import Batch, Losses


@dataclass(frozen=True)
class Schedule:
    """How often each part of an update runs (see training/update.py)."""

    critic_steps: int = 1  # gradient steps per environment step
    policy_every: int = 1  # the policy branch every k critic steps
    target_every: int = 1  # target averaging every k critic steps


def build_temperature(cfg: TemperatureConfig, act_dim: int) -> Temperature:
    target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
    return Temperature(cfg.alpha, cfg.mode == TemperatureMode.auto, target_entropy)


class SoftActorCritic(nn.Module):
    """What both variants share: the policy, the Q ensemble, the temperature, acting, and
    the policy's terms of the losses."""

    # How many eps tensors of shape (batch, dim(A)) one update draws, in the order the loss
    # functions take them.
    noise_draws = 1

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        agent: AgentConfig,
        network: NetworkConfig,
        optimizer: OptimizerConfig,
        temperature: TemperatureConfig,
    ) -> None:
        super().__init__()
        hidden, activation = list(network.hidden_sizes), network.activation.value
        self.act_dim = act_dim
        self.gamma = agent.gamma
        self.tau = agent.tau
        self.reward_scale = agent.reward_scale
        self.schedule = Schedule(
            critic_steps=agent.updates_per_step, target_every=agent.target_update_interval
        )
        self.learning_rates = optimizer
        self.actor = TanhGaussianActor(
            obs_dim, act_dim, hidden, activation, network.log_std_min, network.log_std_max
        )
        self.critic = QEnsemble(obs_dim, act_dim, hidden, activation, agent.n_critics)
        self.temperature = build_temperature(temperature, act_dim)
        self.build_networks(obs_dim, act_dim, hidden, activation, agent)
        # env.normalize_obs=true: set by agents.registry.build_agent.
        self.obs_normalizer: ObservationNormalizer | None = None

    def build_networks(
        self, obs_dim: int, act_dim: int, hidden: list[int], activation: str, agent: AgentConfig
    ) -> None:
        """The variant's own networks (its targets, V_psi), built after the shared ones."""
        raise NotImplementedError

    # --- acting ---------------------------------------------------------------------------

    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        device = self.temperature.log_alpha.device
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(0)
        if self.obs_normalizer is not None:
            obs_tensor = self.obs_normalizer(obs_tensor)
        return self.actor.action(obs_tensor, deterministic)[0].cpu().numpy()

    def observe(self, obs: np.ndarray) -> None:
        """A collected observation: it joins the normaliser's statistics, if any."""
        if self.obs_normalizer is not None:
            device = self.obs_normalizer.mean.device
            self.obs_normalizer.update(torch.as_tensor(obs, dtype=torch.float32, device=device))

    # --- learning -------------------------------------------------------------------------

    def normalized(self, batch: Batch) -> Batch:
        """The batch as the networks see it: observations standardised when normalised."""
        norm = self.obs_normalizer
        if norm is None:
            return batch
        return batch._replace(obs=norm(batch.obs), next_obs=norm(batch.next_obs))

    def critic_losses(self, batch: Batch, *noise: torch.Tensor) -> Losses:
        """The critic's loss (eq. 7) and its metrics, detached."""
        raise NotImplementedError

    def policy_losses(self, batch: Batch, *noise: torch.Tensor) -> Losses:
        """The sum of the policy's loss (eq. 12) and the other losses that need its sample, and
        their metrics, detached."""
        raise NotImplementedError

    def target_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(target network, its online network) pairs; none for an agent without targets."""
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[dict]]:
        """Optimizer name -> its parameter groups, each with its learning rate."""
        raise NotImplementedError

    def branch_parameters(self) -> dict[str, list[nn.Parameter]]:
        """The parameters each loss branch trains, "critic" and "policy": disjoint, together
        those of param_groups (the update engine steps each branch's own when it is done). Here
        the Q ensemble's, and all the others of param_groups (the actor's, the temperature's,
        V_psi's in 2018a); a variant whose branches split otherwise says so."""
        critic = list(self.critic.parameters())
        in_critic = {id(p) for p in critic}
        groups = [group for groups in self.param_groups().values() for group in groups]
        policy = [p for group in groups for p in group["params"] if id(p) not in in_critic]
        return {"critic": critic, "policy": policy}

    def _temperature_groups(self) -> dict[str, list[dict]]:
        if not self.temperature.learned:
            return {}
        group = {"params": [self.temperature.log_alpha], "lr": self.learning_rates.alpha_lr}
        return {"temperature": [group]}

    def _policy_terms(
        self, obs: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample a ~ pi(.|s) by eq. 11; return its log-prob, min_i Q_i(s, a) (gradient through a
        only) and the policy loss of eq. 12."""
        action, log_prob = self.actor(obs, noise=noise)
        q_pi = self.critic(obs, action, detach_params=True).min(dim=0).values
        return log_prob, q_pi, policy_loss(log_prob, q_pi, self.temperature.alpha)

    def _with_temperature(
        self, loss: torch.Tensor, metrics: dict[str, torch.Tensor], log_prob: torch.Tensor
    ) -> Losses:
        if self.temperature.learned:
            alpha_loss = self.temperature.loss(log_prob)  # 2018b, eq. 18
            loss = loss + alpha_loss
            metrics["loss/alpha"] = alpha_loss.detach()
        return loss, metrics
