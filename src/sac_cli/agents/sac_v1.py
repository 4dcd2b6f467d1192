"""SAC 2018a: a state-value network V_psi with a Polyak target, two Q networks (eqs. 5-13)."""

from __future__ import annotations

import torch
from torch import nn

from sac_cli.agents.base import SoftActorCritic
from sac_cli.agents.losses import q_loss, soft_q_target, value_loss
from sac_cli.agents.networks import ValueNetwork, frozen_copy
from sac_cli.config import AgentConfig
from sac_cli.types import Batch, Losses


class SACv1(SoftActorCritic):
    def build_networks(
        self, obs_dim: int, act_dim: int, hidden: list[int], activation: str, agent: AgentConfig
    ) -> None:
        self.value = ValueNetwork(obs_dim, hidden, activation)
        target = ValueNetwork(obs_dim, hidden, activation)
        self.value_target = frozen_copy(target, of=self.value)

    def param_groups(self) -> dict[str, list[dict]]:
        lr = self.learning_rates
        networks = [
            {"params": list(self.value.parameters()), "lr": lr.value_lr},
            {"params": list(self.critic.parameters()), "lr": lr.critic_lr},
            {"params": list(self.actor.parameters()), "lr": lr.actor_lr},
        ]
        return {"networks": networks, **self._temperature_groups()}

    def target_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.value_target, self.value)]  # psi_bar <- tau psi + (1 - tau) psi_bar

    def critic_losses(self, batch: Batch, *noise: torch.Tensor) -> Losses:
        with torch.no_grad():
            target = soft_q_target(
                self.reward_scale * batch.rewards,
                batch.terminated,
                self.value_target(batch.next_obs),
                self.gamma,
            )  # eq. 8
        q = self.critic(batch.obs, batch.actions)
        critic_loss = q_loss(q, target)  # eq. 7; gradient eq. 9
        return critic_loss, {"loss/critic": critic_loss.detach(), "q/mean": q.detach().mean()}

    def policy_losses(self, batch: Batch, *noise: torch.Tensor) -> Losses:
        alpha = self.temperature.alpha
        # One reparameterised sample a ~ pi(.|s) serves eq. 5 (detached) and eq. 12;
        # min over the two Q networks for both, as in 2018a, sec. 4.2.
        log_prob, q_pi, actor_loss = self._policy_terms(batch.obs, noise[0])
        value_target = (q_pi - alpha * log_prob).detach()  # E_a[Q(s, a) - alpha log pi(a|s)]
        loss_v = value_loss(self.value(batch.obs), value_target)  # eq. 5; gradient eq. 6
        metrics = {
            "loss/actor": actor_loss.detach(),
            "loss/value": loss_v.detach(),
            "alpha": alpha,
            "policy/entropy": -log_prob.detach().mean(),
        }
        # Disjoint parameters (psi, phi): one backward pass gives eqs. 6 and 13.
        return self._with_temperature(loss_v + actor_loss, metrics, log_prob)
