"""SAC 2018a: a state-value network V_psi with a Polyak target, two Q networks (eqs. 5-13)."""

from __future__ import annotations

import torch

from sac_cli.config import AgentConfig, NetworkConfig, OptimizerConfig, TemperatureConfig
from sac_cli.networks import ValueNetwork
from sac_cli.optim import adam, polyak_update
from sac_cli.replay import Batch
from sac_cli.sac import SoftActorCritic, q_loss, soft_q_target, value_loss


class SACv1(SoftActorCritic):
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
        hidden, activation = list(network.hidden_sizes), network.activation.value
        self.value = ValueNetwork(obs_dim, hidden, activation)
        self.value_target = ValueNetwork(obs_dim, hidden, activation)
        self.value_target.load_state_dict(self.value.state_dict())
        self.value_target.requires_grad_(False)
        self.optimizer = adam(
            [
                {"params": self.value.parameters(), "lr": optimizer.value_lr},
                {"params": self.critic.parameters(), "lr": optimizer.critic_lr},
                {"params": self.actor.parameters(), "lr": optimizer.actor_lr},
            ],
            optimizer.critic_lr,
        )

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        alpha = self.temperature.alpha
        # One reparameterised sample a ~ pi(.|s) serves eq. 5 (detached) and eq. 12;
        # min over the two Q networks for both, as in 2018a, sec. 4.2.
        log_prob, q_pi, actor_loss = self._policy_step(batch.obs)
        value_target = (q_pi - alpha * log_prob).detach()  # E_a[Q(s, a) - alpha log pi(a|s)]
        loss_v = value_loss(self.value(batch.obs), value_target)  # eq. 5
        with torch.no_grad():
            target = soft_q_target(
                self.reward_scale * batch.rewards,
                batch.terminated,
                self.value_target(batch.next_obs),
                self.gamma,
            )  # eq. 8
        q = self.critic(batch.obs, batch.actions)
        critic_loss = q_loss(q, target)  # eq. 7
        # Disjoint parameters (psi, theta, phi): one backward pass gives eqs. 6, 9 and 13.
        self._step(loss_v + critic_loss + actor_loss)
        alpha_loss = self.temperature.update(log_prob)
        self.num_updates += 1
        if self.num_updates % self.target_update_interval == 0:
            polyak_update(
                self.value_target, self.value, self.tau
            )  # psi_bar <- tau psi + (1-tau) psi_bar
        metrics = {
            "loss/critic": critic_loss.detach(),
            "loss/actor": actor_loss.detach(),
            "loss/value": loss_v.detach(),
            "alpha": alpha,
            "q/mean": q.detach().mean(),
            "policy/entropy": -log_prob.detach().mean(),
        }
        if alpha_loss is not None:
            metrics["loss/alpha"] = alpha_loss
        return metrics
