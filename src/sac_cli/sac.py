"""Soft Actor-Critic losses and the 2018b update (twin Q networks with targets, learned alpha).

Equation numbers refer to the SAC derivation in shared/seeds (Haarnoja et al. 2018a); the
temperature loss is eq. 18 of 2018b. No I/O, no environment, no threads or compilation: an
agent declares its two loss branches, pure functions of the batch and of the
reparameterisation noise (the critic's, eq. 7; the policy's, eq. 12, with the temperature's
and, in 2018a, V's), its parameter groups, its target pairs and its schedule; the update
engine (update.py) runs them. The branches share no trained parameter and no graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sac_cli.config import (
    AgentConfig,
    NetworkConfig,
    OptimizerConfig,
    TemperatureConfig,
    TemperatureMode,
)
from sac_cli.networks import QEnsemble, TanhGaussianActor
from sac_cli.replay import Batch
from sac_cli.temperature import Temperature
from sac_cli.update import Losses


@dataclass(frozen=True)
class Schedule:
    """How often each part of an update runs (see update.py)."""

    critic_steps: int = 1  # gradient steps per environment step
    policy_every: int = 1  # the policy branch every k critic steps
    target_every: int = 1  # target averaging every k critic steps


def soft_q_target(
    reward: torch.Tensor, terminated: torch.Tensor, next_value: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Q_hat(s, a) = r + gamma V(s') (eqs. 2, 8); no bootstrap past a termination."""
    return reward + gamma * (1.0 - terminated) * next_value


def q_loss(q_values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """J_Q(theta) = E[1/2 (Q_theta(s, a) - Q_hat(s, a))^2] (eq. 7), summed over the Q heads."""
    return 0.5 * (q_values - target).pow(2).mean(dim=-1).sum()


def value_loss(value: torch.Tensor, value_target: torch.Tensor) -> torch.Tensor:
    """J_V(psi) = E[1/2 (V_psi(s) - E_a[Q(s, a) - alpha log pi(a|s)])^2] (eq. 5)."""
    return 0.5 * (value - value_target).pow(2).mean()


def policy_loss(log_prob: torch.Tensor, q: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """J_pi(phi) = E[alpha log pi(f(eps; s)|s) - Q(s, f(eps; s))] (eq. 12; eq. 13 by autograd)."""
    return (alpha * log_prob - q).mean()


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

    # --- acting ---------------------------------------------------------------------------

    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        device = self.temperature.log_alpha.device
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(0)
        return self.actor.action(obs_tensor, deterministic)[0].cpu().numpy()

    # --- learning -------------------------------------------------------------------------

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


class SAC(SoftActorCritic):
    """SAC 2018b: clipped double-Q with Polyak targets; optionally learned temperature."""

    noise_draws = 2  # a' ~ pi(.|s') for the target, a ~ pi(.|s) for the policy loss

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        agent: AgentConfig,
        network: NetworkConfig,
        optimizer: OptimizerConfig,
        temperature: TemperatureConfig,
    ) -> None:
        super().__init__(obs_dim, act_dim, agent, network, optimizer, temperature)
        self.critic_target = QEnsemble(
            obs_dim, act_dim, list(network.hidden_sizes), network.activation.value, agent.n_critics
        )
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)

    def param_groups(self) -> dict[str, list[dict]]:
        # One Adam with a group per network: the same as separate optimizers, one fused
        # kernel launch instead of two.
        networks = [
            {"params": list(self.critic.parameters()), "lr": self.learning_rates.critic_lr},
            {"params": list(self.actor.parameters()), "lr": self.learning_rates.actor_lr},
        ]
        return {"networks": networks, **self._temperature_groups()}

    def target_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.critic_target, self.critic)]

    def critic_losses(self, batch: Batch, *noise: torch.Tensor) -> Losses:
        next_noise = noise[0]
        alpha = self.temperature.alpha
        with torch.no_grad():
            next_action, next_log_prob = self.actor(batch.next_obs, noise=next_noise)
            next_q = self.critic_target(batch.next_obs, next_action).min(dim=0).values
            next_value = next_q - alpha * next_log_prob  # V(s') by eq. 3 with the target Q
            target = soft_q_target(
                self.reward_scale * batch.rewards, batch.terminated, next_value, self.gamma
            )  # eq. 8
        q = self.critic(batch.obs, batch.actions)
        critic_loss = q_loss(q, target)  # eq. 7; its gradient is eq. 9
        return critic_loss, {"loss/critic": critic_loss.detach(), "q/mean": q.detach().mean()}

    def policy_losses(self, batch: Batch, *noise: torch.Tensor) -> Losses:
        log_prob, _, actor_loss = self._policy_terms(batch.obs, noise[1])  # eqs. 12, 13
        metrics = {
            "loss/actor": actor_loss.detach(),
            "alpha": self.temperature.alpha,
            "policy/entropy": -log_prob.detach().mean(),
        }
        return self._with_temperature(actor_loss, metrics, log_prob)
