"""SAC 2018b: twin Q networks with Polyak targets, clipped double-Q, learned temperature.

Equation numbers refer to the SAC derivation in shared/seeds (Haarnoja et al. 2018a); the
temperature loss is eq. 18 of 2018b.
"""

from __future__ import annotations

import torch
from torch import nn

from sac_cli.agents.base import SoftActorCritic
from sac_cli.agents.losses import q_loss, soft_q_target
from sac_cli.agents.networks import QEnsemble, frozen_copy
from sac_cli.config import AgentConfig
from sac_cli.types import Batch, Losses


class SAC(SoftActorCritic):
    """SAC 2018b: clipped double-Q with Polyak targets; optionally learned temperature."""

    noise_draws = 2  # a' ~ pi(.|s') for the target, a ~ pi(.|s) for the policy loss

    def build_networks(
        self, obs_dim: int, act_dim: int, hidden: list[int], activation: str, agent: AgentConfig
    ) -> None:
        target = QEnsemble(obs_dim, act_dim, hidden, activation, agent.n_critics)
        self.critic_target = frozen_copy(target, of=self.critic)

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
