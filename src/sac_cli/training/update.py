"""The update engine: runs any agent's declared update (agents say what, this says how).

An agent declares its loss branches (pure functions of a batch and noise: the critic's and
the policy's), the parameters each trains, the noise they take, its parameter groups with
their learning rates, its target pairs (maybe none) and its schedule. The engine draws the
noise, zeroes the gradients, runs the branches with their backward passes (in two threads on
CPU when that is faster, the same numbers bit for bit), steps the optimizers, averages the
targets, and compiles the branches (CUDA graphs on CUDA) when asked. Whether to use threads
is decided here and nowhere else (branch_threads_by_default).

Two threads, and the overlap. The policy's thread (the caller's) steps the policy's
parameters as soon as its backward pass is done and the critic's forward pass no longer reads
them; the critic's thread steps the critic once the policy's step is done (the policy's
backward pass reads the critic's weights), then averages the targets. Inside
`with engine.overlapping():` (the trainer's loop), update() returns right after the policy's
step, and the caller acts, steps the environment and samples the next batch while the
critic's step finishes: the next update() or finish() waits for it. The numbers are those of
the one-thread update, bit for bit: each parameter gets the same gradient and the same Adam
step, only on another thread.

Schedule: `critic_steps` updates per environment step (the trainer's loop), the policy
branch every `policy_every` updates, the targets every `target_every` updates. A branch that
does not run this update leaves its parameters' gradients None, which Adam skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from typing import Any

import torch

from sac_cli.agents.networks import use_compile_activations
from sac_cli.device import usable_cpus
from sac_cli.errors import UserError
from sac_cli.training.branches import BranchSteps, Handoff, submit
from sac_cli.training.optim import adam, adam_step, polyak_update
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


def root_cause(error: BaseException) -> str:
    """The innermost exception of a chain, in one line (Inductor wraps its toolchain's)."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _backward(losses: LossFn, batch: Batch, noise: list[torch.Tensor]) -> Metrics:
    loss, metrics = losses(batch, *noise)
    loss.backward()
    return metrics


class UpdateEngine:
    def __init__(
        self,
        agent: Any,
        device: torch.device,
        branch_threads: bool | None = None,
        compile: bool = False,
        compile_fall_back: bool = False,
    ) -> None:
        """branch_threads: None, branch_threads_by_default(device). compile_fall_back: if the
        first update fails to compile, run eager (compile_failure says why) instead of raising
        a UserError."""
        self.agent = agent
        self.schedule = agent.schedule
        self.optimizers = {name: adam(groups) for name, groups in agent.param_groups().items()}
        self.branch_steps = BranchSteps(agent, self.optimizers)
        self.device = device
        self.cuda_graphs = compile and device.type == "cuda"
        self.overlap = False  # see overlapping()
        # The update whose critic step may still run (overlap): that step, and the metrics
        # of its policy branch.
        self._in_flight: Future[Metrics] | None = None
        self._in_flight_policy: Metrics = {}
        self.set_branch_threads(
            branch_threads_by_default(device) if branch_threads is None else branch_threads
        )
        self.num_updates = 0
        self._eager_branches()
        self._compiling = False  # the next update compiles: run its branches one by one
        self.compiles_next = False  # the next update is the first compiled one
        self.compile_fall_back = compile_fall_back
        self.compile_failure: str | None = None
        if compile:
            self._compile()

    def set_branch_threads(self, on: bool) -> None:
        if self._in_flight is not None:
            raise RuntimeError("an update is in flight: call finish() first")
        self.branch_threads = on and not self.cuda_graphs  # CUDA graph trees replay from one thread

    def _both_branches(self, batch: Batch, *noise: torch.Tensor) -> Losses:
        """Both branches: the sum of their losses (their parameters are disjoint, so one
        backward pass gives each its own gradient) and their metrics."""
        critic_loss, metrics = self.agent.critic_losses(batch, *noise)
        loss, policy_metrics = self.agent.policy_losses(batch, *noise)
        return critic_loss + loss, {**metrics, **policy_metrics}

    def _compile(self) -> None:
        """torch.compile the branches and their backward passes (at the first update); on CUDA
        with CUDA graphs ("reduce-overhead"), elsewhere with Inductor's C++ wrapper: each
        compiled graph then runs as one C++ call instead of Python calling each fused kernel,
        which traded the GIL with the other branch's thread between kernels (in the default
        two-branch mode: 1.08-1.10x eager's env steps/s, the Python wrapper 0.99-1.01x; README,
        Speed). The same update as eager, up to rounding."""
        settings: dict[str, Any] = {}
        if self.cuda_graphs:
            settings["mode"] = "reduce-overhead"
        elif self.device.type == "cpu":
            settings["options"] = {"cpp_wrapper": True}
        use_compile_activations(self.agent)
        self._compiling = self.compiles_next = True
        self._critic, self._policy, self._both = (
            torch.compile(fn, fullgraph=True, dynamic=False, **settings)
            for fn in (self.agent.critic_losses, self.agent.policy_losses, self._both_branches)
        )

    def _eager_branches(self) -> None:
        self._critic: LossFn = self.agent.critic_losses
        self._policy: LossFn = self.agent.policy_losses
        self._both: LossFn = self._both_branches

    def _use_eager(self) -> None:
        """Back from compiled to eager (a failed compilation under compile=auto)."""
        use_compile_activations(self.agent, on=False)
        self._compiling = self.cuda_graphs = False
        self._eager_branches()

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
        noise: the draws to use instead of fresh ones (to compare two devices).
        With overlap and branch threads, the critic's step may still be running when this
        returns: this update's metrics come with the next update() or finish(), and this one
        returns the previous update's (if still in flight)."""
        late = self.finish()
        if noise is None:
            noise = self.noise(batch.obs.shape[0])
        batch = self.agent.normalized(batch)
        if self.compiles_next:
            return self._first_compiled_update(batch, noise, late)
        return self._update(batch, noise, late)

    def _first_compiled_update(
        self, batch: Batch, noise: list[torch.Tensor], late: Metrics
    ) -> Metrics:
        """The update that compiles. If compiling fails: with compile_fall_back, the same
        update eager (nothing was stepped yet); else a UserError."""
        self.compiles_next = False
        updates = self.num_updates
        try:
            return self._update(batch, noise, late)
        except Exception as error:  # noqa: BLE001 - Inductor and its toolchain raise many kinds
            reason = root_cause(error)
            if not self.compile_fall_back:
                raise UserError(f"torch.compile failed: {reason}; use compile=false") from None
        self.compile_failure = reason
        self._use_eager()
        self.num_updates = updates
        return self._update(batch, noise, late)

    def _update(self, batch: Batch, noise: list[torch.Tensor], late: Metrics) -> Metrics:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration for CUDA graph trees
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        policy_runs = self.num_updates % self.schedule.policy_every == 0
        self.num_updates += 1
        targets_due = self.num_updates % self.schedule.target_every == 0
        if self.branch_threads and not self._compiling:
            self._in_flight_policy = self._in_two_threads(batch, noise, policy_runs, targets_due)
            return late if self.overlap else self.finish()
        # Nothing was in flight (late is empty): no update runs on another thread here.
        if not policy_runs:
            metrics = _backward(self._critic, batch, noise)
        elif self.branch_threads:  # compiling: one branch at a time
            metrics = _backward(self._critic, batch, noise)
            metrics.update(_backward(self._policy, batch, noise))
            self._compiling = False
        else:
            metrics = _backward(self._both, batch, noise)
        if self.cuda_graphs:
            # The next replay overwrites the graph's outputs: one copy keeps the metrics.
            metrics = dict(zip(metrics, torch.stack(list(metrics.values())).unbind(), strict=True))
        for optimizer in self.optimizers.values():
            adam_step(optimizer)
        if targets_due:
            self._average_targets()
        return metrics

    @contextmanager
    def overlapping(self) -> Iterator[None]:
        """Within this block, update() may return with the critic's step still running (with
        branch threads; see the module's docstring): the caller calls finish() before it reads
        the agent's or the optimizers' state. Leaving the block waits for that step."""
        self.overlap = True
        try:
            yield
        finally:
            self.overlap = False
            if self._in_flight is not None:
                wait([self._in_flight])  # its metrics, or its error, stay for finish()

    def finish(self) -> Metrics:
        """Wait for the critic's step in flight (overlap), if any, and return the metrics of
        its update; raises what it raised."""
        in_flight, self._in_flight = self._in_flight, None
        return {} if in_flight is None else {**in_flight.result(), **self._in_flight_policy}

    def _in_two_threads(
        self, batch: Batch, noise: list[torch.Tensor], policy_runs: bool, targets_due: bool
    ) -> Metrics:
        """The critic's branch on the branch thread (left in self._in_flight), the policy's on
        this one; returns the policy's metrics once its parameters are stepped."""
        handoff = Handoff(policy_runs)
        self._in_flight = submit(self._critic_thread, batch, noise, handoff, targets_due)
        if not policy_runs:
            return {}
        try:
            loss, metrics = self._policy(batch, *noise)
            grads = self.branch_steps.gradients(loss, "policy")
            handoff.critic_read.wait()
            if handoff.failed:
                self.finish()  # raises the critic's error
            self.branch_steps.step("policy", grads)
        except BaseException:
            handoff.fail()
            if self._in_flight is not None:
                wait([self._in_flight])  # never leave the critic running into the next update
                self._in_flight = None
            raise
        handoff.policy_stepped.set()
        return metrics

    def _critic_thread(
        self, batch: Batch, noise: list[torch.Tensor], handoff: Handoff, targets_due: bool
    ) -> Metrics:
        try:
            loss, metrics = self._critic(batch, *noise)
        except BaseException:
            handoff.fail()
            raise
        handoff.critic_read.set()
        grads = self.branch_steps.gradients(loss, "critic")
        handoff.policy_stepped.wait()
        if not handoff.failed:
            self.branch_steps.step("critic", grads)
            if targets_due:
                self._average_targets()
        return metrics

    def _average_targets(self) -> None:
        for target, online in self.agent.target_pairs():
            polyak_update(target, online, self.agent.tau)

    def state_dict(self) -> dict[str, Any]:
        if self._in_flight is not None:
            self._in_flight.result()  # stepped (its metrics are kept for finish())
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.finish()
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[name])

