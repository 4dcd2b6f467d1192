"""The update engine: runs any agent's declared update (agents say what, this says how).

An agent declares its loss branches (pure functions of a batch and noise: the critic's and
the policy's), the noise they take, its parameter groups with their learning rates, its
target pairs (maybe none) and its schedule. The engine draws the noise, zeroes the
gradients, runs the branches with their backward passes (in two threads on CPU when that
is faster, the same numbers bit for bit), steps the optimizers, averages the targets, and
compiles the branches (CUDA graphs on CUDA) when asked. Whether to use threads is decided
here and nowhere else (branch_threads_by_default).

Schedule: `critic_steps` updates per environment step (the trainer's loop), the policy
branch every `policy_every` updates, the targets every `target_every` updates. A branch that
does not run this update leaves its parameters' gradients None, which Adam skips.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import torch

from sac_cli.agents.networks import use_compile_activations
from sac_cli.device import usable_cpus
from sac_cli.training.optim import adam, polyak_update
from sac_cli.types import Batch, Losses, LossFn, Metrics


def default_torch_threads(device: torch.device) -> int | None:
    """torch's intra-op threads when the user sets none (`threads: null`) and the job has its
    cores to itself: on CPU one, so that the critic's and the policy's branches each take a core
    (branch_threads_by_default). Intra-op threads are slower for these small matrices (torch's
    2 threads: 0.91x the env steps/s of 1 thread and 2 branches on this project's 2-core
    machine) and collapse when another process takes a core, as OpenMP's teams wait for their
    slowest thread (0.36-0.38x of it with one core busy; README, Speed). None elsewhere:
    torch's own choice."""
    return 1 if device.type == "cpu" else None


def branch_threads_by_default(device: torch.device, shares_cores: bool = False) -> bool:
    """The critic's and the policy's branches in two threads: on CPU, when torch runs
    single-threaded, two cores are free and no other job of a sweep shares them. (With more
    intra-op threads, two branches would each start an OpenMP team and oversubscribe.)"""
    if shares_cores or device.type != "cpu" or torch.get_num_threads() != 1:
        return False
    return usable_cpus() >= 2


def _backward(losses: LossFn, batch: Batch, noise: list[torch.Tensor]) -> Metrics:
    loss, metrics = losses(batch, *noise)
    loss.backward()
    return metrics


_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _submit(losses: LossFn, batch: Batch, noise: list[torch.Tensor]) -> Future[Metrics]:
    """Run `losses` and its backward pass on this process's branch thread."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():  # a forked child has no such thread
            _pool = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="sac-branch"))
        return _pool[1].submit(_backward, losses, batch, noise)


class UpdateEngine:
    def __init__(
        self,
        agent: Any,
        device: torch.device,
        branch_threads: bool | None = None,
        compile: bool = False,
    ) -> None:
        """branch_threads: None, branch_threads_by_default(device)."""
        self.agent = agent
        self.schedule = agent.schedule
        self.optimizers = {name: adam(groups) for name, groups in agent.param_groups().items()}
        self.cuda_graphs = compile and device.type == "cuda"
        self.set_branch_threads(
            branch_threads_by_default(device) if branch_threads is None else branch_threads
        )
        self.num_updates = 0
        self._critic: LossFn = agent.critic_losses
        self._policy: LossFn = agent.policy_losses
        self._both: LossFn = self._both_branches
        self._compiling = False  # the next update compiles: run its branches one by one
        if compile:
            self._compile()

    def set_branch_threads(self, on: bool) -> None:
        self.branch_threads = on and not self.cuda_graphs  # CUDA graph trees replay from one thread

    def _both_branches(self, batch: Batch, *noise: torch.Tensor) -> Losses:
        """Both branches: the sum of their losses (their parameters are disjoint, so one
        backward pass gives each its own gradient) and their metrics."""
        critic_loss, metrics = self.agent.critic_losses(batch, *noise)
        loss, policy_metrics = self.agent.policy_losses(batch, *noise)
        return critic_loss + loss, {**metrics, **policy_metrics}

    def _compile(self) -> None:
        """torch.compile the branches and their backward passes (at the first update); on CUDA
        with CUDA graphs ("reduce-overhead"). The same update as eager, up to rounding."""
        mode = "reduce-overhead" if self.cuda_graphs else None
        use_compile_activations(self.agent)
        self._compiling = True
        self._critic, self._policy, self._both = (
            torch.compile(fn, mode=mode, fullgraph=True, dynamic=False)
            for fn in (self.agent.critic_losses, self.agent.policy_losses, self._both_branches)
        )

    def noise(self, batch_size: int) -> list[torch.Tensor]:
        """eps ~ N(0, I) for eq. 11, drawn here from torch's global generator rather than
        inside the losses: the compiled and the eager update then see the same numbers."""
        param = next(iter(self.optimizers.values())).param_groups[0]["params"][0]
        shape = (batch_size, self.agent.act_dim)
        return [
            torch.randn(shape, dtype=param.dtype, device=param.device)
            for _ in range(self.agent.noise_draws)
        ]

    def update(self, batch: Batch, noise: list[torch.Tensor] | None = None) -> Metrics:
        """One gradient step of the critic, and of the policy when the schedule says so.
        noise: the draws to use instead of fresh ones (to compare two devices)."""
        if noise is None:
            noise = self.noise(batch.obs.shape[0])
        batch = self.agent.normalized(batch)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration for CUDA graph trees
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        if self.num_updates % self.schedule.policy_every != 0:
            metrics = _backward(self._critic, batch, noise)
        elif self.branch_threads and not self._compiling:
            critic = _submit(self._critic, batch, noise)
            try:
                metrics = _backward(self._policy, batch, noise)
            except BaseException:
                wait([critic])  # never leave the other branch running into the next update
                raise
            metrics = {**critic.result(), **metrics}
        elif self.branch_threads:
            metrics = _backward(self._critic, batch, noise)
            metrics.update(_backward(self._policy, batch, noise))
            self._compiling = False
        else:
            metrics = _backward(self._both, batch, noise)
        if self.cuda_graphs:
            # The next replay overwrites the graph's outputs: one copy keeps the metrics.
            metrics = dict(zip(metrics, torch.stack(list(metrics.values())).unbind(), strict=True))
        for optimizer in self.optimizers.values():
            optimizer.step()
        self.num_updates += 1
        if self.num_updates % self.schedule.target_every == 0:
            for target, online in self.agent.target_pairs():
                polyak_update(target, online, self.agent.tau)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[name])
