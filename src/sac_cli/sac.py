"""Soft Actor-Critic losses and the 2018b update (twin Q networks with targets, learned alpha).

Equation numbers refer to the SAC derivation in shared/seeds (Haarnoja et al. 2018a); the
temperature loss is eq. 18 of 2018b. No I/O, no environment: `update` takes a batch and
returns metrics as tensors, so the caller decides when to synchronise with the device.
"""

from __future__ import annotations

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
from sac_cli.optim import adam, polyak_update
from sac_cli.replay import Batch
from sac_cli.temperature import Temperature


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


def build_temperature(cfg: TemperatureConfig, lr: float, act_dim: int) -> Temperature:
    target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
    return Temperature(cfg.alpha, cfg.mode == TemperatureMode.auto, target_entropy, lr)


class SoftActorCritic(nn.Module):
    """What both variants share: the policy, the Q ensemble, the temperature, acting."""

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
        self.gamma = agent.gamma
        self.tau = agent.tau
        self.reward_scale = agent.reward_scale
        self.target_update_interval = agent.target_update_interval
        self.num_updates = 0
        self.actor = TanhGaussianActor(
            obs_dim, act_dim, hidden, activation, network.log_std_min, network.log_std_max
        )
        self.critic = QEnsemble(obs_dim, act_dim, hidden, activation, agent.n_critics)
        self.temperature = build_temperature(temperature, optimizer.alpha_lr, act_dim)

    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        device = self.temperature.log_alpha.device
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(0)
        action, _ = self.actor(obs_tensor, deterministic)
        return action[0].cpu().numpy()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = {"networks": self.optimizer}
        if self.temperature.optimizer is not None:
            optimizers["temperature"] = self.temperature.optimizer
        return optimizers

    def _policy_step(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample a ~ pi(.|s) by eq. 11; return its log-prob, min_i Q_i(s, a) (gradient through a
        only) and the policy loss of eq. 12."""
        action, log_prob = self.actor(obs)
        q_pi = self.critic(obs, action, detach_params=True).min(dim=0).values
        return log_prob, q_pi, policy_loss(log_prob, q_pi, self.temperature.alpha)

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


class SAC(SoftActorCritic):
    """SAC 2018b: clipped double-Q with Polyak targets; optionally learned temperature."""

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
        # One Adam with a parameter group per network: the same as separate optimizers,
        # one fused kernel launch instead of two.
        self.optimizer = adam(
            [
                {"params": self.critic.parameters(), "lr": optimizer.critic_lr},
                {"params": self.actor.parameters(), "lr": optimizer.actor_lr},
            ],
            optimizer.critic_lr,
        )

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        alpha = self.temperature.alpha
        with torch.no_grad():
            next_action, next_log_prob = self.actor(batch.next_obs)
            next_q = self.critic_target(batch.next_obs, next_action).min(dim=0).values
            next_value = next_q - alpha * next_log_prob  # V(s') by eq. 3 with the target Q
            target = soft_q_target(
                self.reward_scale * batch.rewards, batch.terminated, next_value, self.gamma
            )  # eq. 8
        q = self.critic(batch.obs, batch.actions)
        critic_loss = q_loss(q, target)  # eq. 7
        log_prob, _, actor_loss = self._policy_step(batch.obs)  # eq. 12
        # The two losses touch disjoint parameters: one backward pass serves both (eqs. 9, 13).
        self._step(critic_loss + actor_loss)
        alpha_loss = self.temperature.update(log_prob)
        self.num_updates += 1
        if self.num_updates % self.target_update_interval == 0:
            polyak_update(self.critic_target, self.critic, self.tau)
        metrics = {
            "loss/critic": critic_loss.detach(),
            "loss/actor": actor_loss.detach(),
            "alpha": alpha,
            "q/mean": q.detach().mean(),
            "policy/entropy": -log_prob.detach().mean(),
        }
        if alpha_loss is not None:
            metrics["loss/alpha"] = alpha_loss
        return metrics
