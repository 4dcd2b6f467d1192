"""The critic's and the policy's loss branches on two threads (the update engine's, update.py):
the branch thread, what each branch waits for from the other, and each branch's own
gradients and optimizer step."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from sac_cli.training.optim import adam_step
from sac_cli.types import Metrics

_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def submit(fn: Callable[..., Metrics], *args: Any) -> Future[Metrics]:
    """Run fn(*args) on this process's branch thread."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():  # a forked child has no such thread
            _pool = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="sac-branch"))
        return _pool[1].submit(fn, *args)


class Handoff:
    """What each branch thread waits for from the other in one update. `critic_read`: the
    critic's forward pass is done (it reads the policy's parameters: a' ~ pi(.|s'), alpha).
    `policy_stepped`: the policy's parameters are stepped (its backward pass, done before,
    reads the critic's weights). `failed`: the other thread stopped on an error: step nothing."""

    def __init__(self, policy_runs: bool) -> None:
        self.critic_read = threading.Event()
        self.policy_stepped = threading.Event()
        if not policy_runs:
            self.policy_stepped.set()
        self.failed = False

    def fail(self) -> None:
        self.failed = True
        self.critic_read.set()
        self.policy_stepped.set()


class BranchSteps:
    """Each branch's parameters (the agent's branch_parameters) and the optimizers that hold
    them: a branch's gradients, and an optimizer step of its parameters alone."""

    def __init__(self, agent: Any, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        self.params = _branch_parameters(agent, optimizers)
        self.optimizers = {
            branch: [opt for opt in optimizers.values() if _ids(opt) & _ids(params)]
            for branch, params in self.params.items()
        }

    def gradients(self, loss: torch.Tensor, branch: str) -> list[torch.Tensor | None]:
        """The branch's gradients, as its backward pass would leave them in .grad."""
        return list(torch.autograd.grad(loss, self.params[branch], allow_unused=True))

    def step(self, branch: str, grads: list[torch.Tensor | None]) -> None:
        """Adam on the branch's parameters alone: the others' gradients are None meanwhile (the
        critic's thread steps after the policy's), and Adam skips a parameter without one."""
        params = self.params[branch]
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        for optimizer in self.optimizers[branch]:
            adam_step(optimizer)
        for param in params:
            param.grad = None


def _branch_parameters(
    agent: Any, optimizers: dict[str, torch.optim.Optimizer]
) -> dict[str, list[torch.nn.Parameter]]:
    """The agent's "critic" and "policy" parameters: disjoint, and together the optimizers'."""
    branches = agent.branch_parameters()
    critic, policy = (_ids(branches[name]) for name in ("critic", "policy"))
    optimized = set().union(*map(_ids, optimizers.values()))
    if critic & policy or critic | policy != optimized:
        raise ValueError(
            f"{type(agent).__name__}.branch_parameters() must split the optimized parameters "
            "into two disjoint lists, 'critic' and 'policy'"
        )
    return {name: list(branches[name]) for name in ("critic", "policy")}


def _ids(params: torch.optim.Optimizer | list[torch.nn.Parameter]) -> set[int]:
    """The identities of a list's parameters, or of an optimizer's."""
    if isinstance(params, torch.optim.Optimizer):
        params = [p for group in params.param_groups for p in group["params"]]
    return {id(p) for p in params}
