"""Soft Actor-Critic losses and the 2018b update (twin Q networks with targets, learned alpha).

Equation numbers refer to the SAC derivation in shared/seeds (Haarnoja et al. 2018a); the
temperature loss is eq. 18 of 2018b. No I/O, no environment: `update` takes a batch and
returns metrics as tensors, so the caller decides when to synchronise with the device.

An update evaluates two independent groups of losses, pure functions of the batch and of the
reparameterisation noise (so that torch.compile can take them whole): the critic's (eq. 7)
and the policy's (eq. 12, with the temperature's and, in 2018a, V's). They share no trained
parameter and no graph, so their forward and backward passes may run in two threads, one per
core; then the optimizer steps and the target networks follow.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

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
from sac_cli.device import usable_cpus
from sac_cli.networks import QEnsemble, TanhGaussianActor, use_compile_activations
from sac_cli.optim import adam, polyak_update
from sac_cli.replay import Batch
from sac_cli.temperature import Temperature

Losses = tuple[torch.Tensor, dict[str, torch.Tensor]]


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


def _backward(
    losses: Callable[..., Losses], batch: Batch, noise: list[torch.Tensor]
) -> dict[str, torch.Tensor]:
    loss, metrics = losses(batch, *noise)
    loss.backward()
    return metrics


_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _submit(
    losses: Callable[..., Losses], batch: Batch, noise: list[torch.Tensor]
) -> Future[dict[str, torch.Tensor]]:
    """Run `losses` and its backward pass on this process's branch thread."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():  # a forked child has no such thread
            _pool = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="sac-branch"))
        return _pool[1].submit(_backward, losses, batch, noise)


def parallel_branches_by_default(device: torch.device) -> bool:
    """On CPU, when torch runs single-threaded and the process may use two cores or more: the
    second branch then gets a core of its own. (With more intra-op threads, two branches
    would each start an OpenMP team and oversubscribe the cores.)"""
    if device.type != "cpu" or torch.get_num_threads() != 1:
        return False
    return usable_cpus() >= 2


def build_temperature(cfg: TemperatureConfig, lr: float, act_dim: int) -> Temperature:
    target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
    return Temperature(cfg.alpha, cfg.mode == TemperatureMode.auto, target_entropy, lr)


class SoftActorCritic(nn.Module):
    """What both variants share: the policy, the Q ensemble, the temperature, acting, and the
    update's skeleton (noise, the two loss branches and their backward passes, optimizer
    steps, target averaging)."""

    # How many eps tensors of shape (batch, dim(A)) one update draws, in the order the loss
    # functions take them.
    n_noise = 1

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
        self.target_update_interval = agent.target_update_interval
        self.num_updates = 0
        self.actor = TanhGaussianActor(
            obs_dim, act_dim, hidden, activation, network.log_std_min, network.log_std_max
        )
        self.critic = QEnsemble(obs_dim, act_dim, hidden, activation, agent.n_critics)
        self.temperature = build_temperature(temperature, optimizer.alpha_lr, act_dim)
        # Run the critic's and the policy's branch in two threads (see build_agent).
        self.parallel_branches = False
        self._losses: Callable[..., Losses] = self.losses
        self._critic_losses: Callable[..., Losses] = self.critic_losses
        self._policy_losses: Callable[..., Losses] = self.policy_losses
        self._cuda_graphs = False
        self._compiling = False  # the next update compiles: run its branches one by one

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

    def losses(self, batch: Batch, *noise: torch.Tensor) -> Losses:
        """Both branches: the sum of every loss of one update (their parameters are disjoint, so
        one backward pass gives each its own gradient) and the metrics."""
        critic_loss, metrics = self.critic_losses(batch, *noise)
        loss, policy_metrics = self.policy_losses(batch, *noise)
        return critic_loss + loss, {**metrics, **policy_metrics}

    def target_pairs(self) -> tuple[nn.Module, nn.Module]:
        """(target network, its online network)."""
        raise NotImplementedError

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        # eps ~ N(0, I) for eq. 11, drawn here from torch's global generator rather than inside
        # `losses`: the compiled and the eager update then see the same numbers.
        param = self.temperature.log_alpha
        shape = (batch.obs.shape[0], self.act_dim)
        noise = [
            torch.randn(shape, dtype=param.dtype, device=param.device) for _ in range(self.n_noise)
        ]
        if self._cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration for CUDA graph trees
        for optimizer in self.optimizers().values():
            optimizer.zero_grad(set_to_none=True)
        if self.parallel_branches and not self._compiling:
            critic = _submit(self._critic_losses, batch, noise)
            try:
                metrics = _backward(self._policy_losses, batch, noise)
            except BaseException:
                wait([critic])  # never leave the other branch running into the next update
                raise
            metrics = {**critic.result(), **metrics}
        elif self.parallel_branches:
            metrics = _backward(self._critic_losses, batch, noise)
            metrics.update(_backward(self._policy_losses, batch, noise))
            self._compiling = False
        else:
            metrics = _backward(self._losses, batch, noise)
        if self._cuda_graphs:
            # The next replay overwrites the graph's outputs: one copy keeps the metrics.
            metrics = dict(zip(metrics, torch.stack(list(metrics.values())).unbind(), strict=True))
        for optimizer in self.optimizers().values():
            optimizer.step()
        self.num_updates += 1
        if self.num_updates % self.target_update_interval == 0:
            polyak_update(*self.target_pairs(), self.tau)
        return metrics

    def compile_update(self) -> None:
        """torch.compile the losses and their backward pass (at the first update), on CUDA with
        CUDA graphs ("reduce-overhead"). The same update as the eager one, up to rounding."""
        self._cuda_graphs = self.temperature.log_alpha.device.type == "cuda"
        mode = "reduce-overhead" if self._cuda_graphs else None
        if self._cuda_graphs:
            self.parallel_branches = False  # CUDA graph trees replay from one thread
        use_compile_activations(self)
        self._compiling = True
        self._losses, self._critic_losses, self._policy_losses = (
            torch.compile(fn, mode=mode, fullgraph=True, dynamic=False)
            for fn in (self.losses, self.critic_losses, self.policy_losses)
        )

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = {"networks": self.optimizer}
        if self.temperature.optimizer is not None:
            optimizers["temperature"] = self.temperature.optimizer
        return optimizers

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

    n_noise = 2  # a' ~ pi(.|s') for the target, a ~ pi(.|s) for the policy loss

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

    def target_pairs(self) -> tuple[nn.Module, nn.Module]:
        return self.critic_target, self.critic

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
