"""`sac-bench --ops`: where each loss branch's time goes, op by op (CPU).

Each aten op of the critic's and the policy's branch (forward and backward, as the update
engine runs them, one torch thread) is timed where torch dispatches it, and counted in one of
three kinds: matrix products; passes over tensors as large as a layer's activations (batch x
widest hidden layer, or larger: bias copies, activation backward, the output layer's dot
products); and small ops (everything else: the Gaussian's log-density, the losses, views).
The same branches with 8-unit hidden layers give the fixed cost of their ops, whatever the
width.

Timed at the dispatcher rather than with torch.profiler, whose own bookkeeping more than
quadrupled the time it reported for the (2, 256, 256) passes here. The timer's own cost (a
few microseconds per op) is in the op times; the wall time of a branch without it is shown
beside them.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sac_cli.bench.runners import SacCliRunner, Settings
from sac_cli.errors import UserError

BRANCHES = ("critic", "policy")
KINDS = ("matrix products", "activation passes", "small ops")
MATRIX_PRODUCTS = {torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm,
                   torch.ops.aten.baddbmm}
TINY_HIDDEN = 8


class OpTimer(TorchDispatchMode):
    """Seconds and calls of every aten op run inside it, by op and by kind."""

    def __init__(self, activation_numel: int) -> None:
        super().__init__()
        self.activation_numel = activation_numel
        self.seconds: Counter[tuple[str, str]] = Counter()
        self.calls: Counter[tuple[str, str]] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        key = (str(func.overloadpacket.__name__), self.kind(func, args))
        self.seconds[key] += time.perf_counter() - start
        self.calls[key] += 1
        return out

    def kind(self, func, args) -> str:
        if func.overloadpacket in MATRIX_PRODUCTS:
            return KINDS[0]
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if any(t.numel() >= self.activation_numel for t in tensors):
            return KINDS[1]
        return KINDS[2]


def op_breakdown(settings: Settings, updates: int) -> dict[str, Any]:
    """Per branch: wall ms per update, and ms and ops per update of each kind and of its
    costliest ops; the same with TINY_HIDDEN-unit layers (`fixed`)."""
    if settings.device.type != "cpu":
        raise UserError("--ops times each op as it runs, which only the CPU does: use --device cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each branch runs in sac-train's default on CPU
    try:
        full = _branches(settings, updates)
        tiny = replace(settings, hidden=[TINY_HIDDEN] * len(settings.hidden))
        fixed = _branches(tiny, updates, by_op=False)
    finally:
        torch.set_num_threads(before)
    return {
        "env": settings.env_id,
        "hidden": settings.hidden,
        "batch_size": settings.batch_size,
        "updates": updates,
        "torch": torch.__version__,
        "branches": full,
        "fixed": {name: fixed[name]["wall_ms"] for name in BRANCHES},
    }


def _branches(settings: Settings, updates: int, by_op: bool = True) -> dict[str, dict[str, Any]]:
    """Each branch's median wall ms per update; with by_op, its ops timed too (_summary)."""
    runner = SacCliRunner(settings, compiled=False)
    engine, buffer = runner.engine, runner.buffer
    losses = {"critic": engine.agent.critic_losses, "policy": engine.agent.policy_losses}

    def inputs() -> tuple[Any, list[torch.Tensor]]:
        """A batch and its noise, drawn outside the timed branch (as the engine does)."""
        batch = engine.agent.normalized(buffer.sample(settings.batch_size))
        return batch, engine.noise(settings.batch_size)

    def branch(name: str, batch: Any, noise: list[torch.Tensor]) -> None:
        loss, _ = losses[name](batch, *noise)
        engine.branch_steps.gradients(loss, name)

    out = {}
    for name in BRANCHES:
        for _ in range(max(5, updates // 5)):  # warm-up
            branch(name, *inputs())
        walls = []
        for _ in range(updates):
            args = inputs()
            start = time.perf_counter()
            branch(name, *args)
            walls.append(time.perf_counter() - start)
        wall_ms = statistics.median(walls) * 1e3
        if not by_op:
            out[name] = {"wall_ms": wall_ms}
            continue
        timer = OpTimer(settings.batch_size * max(settings.hidden))
        for _ in range(updates):
            args = inputs()
            with timer:
                branch(name, *args)
        out[name] = _summary(timer, updates, wall_ms)
    return out


def _summary(timer: OpTimer, updates: int, wall_ms: float) -> dict[str, Any]:
    per_update_ms = {key: s * 1e3 / updates for key, s in timer.seconds.items()}
    total = sum(per_update_ms.values())
    kinds = {
        kind: {
            "ms": sum(ms for (_, k), ms in per_update_ms.items() if k == kind),
            "ops": sum(n for (_, k), n in timer.calls.items() if k == kind) / updates,
        }
        for kind in KINDS
    }
    for summary in kinds.values():
        summary["share"] = summary["ms"] / total if total else 0.0
    top = sorted(per_update_ms.items(), key=lambda item: -item[1])[:8]
    return {
        "wall_ms": wall_ms,
        "timed_ms": total,
        "kinds": kinds,
        "top": [
            {"op": op, "kind": kind, "ms": ms, "calls": timer.calls[(op, kind)] / updates}
            for (op, kind), ms in top
        ],
    }


def ops_table(report: dict[str, Any]) -> str:
    hidden = "-".join(map(str, report["hidden"]))
    lines = [
        f"where each branch's time goes: {report['env']}, {hidden} hidden, batch "
        f"{report['batch_size']}, one torch thread, {report['updates']} updates, torch "
        f"{report['torch']}; ms per update (share, ops)",
        f"{'branch':8} {'wall':>6} {'timed':>6}   " + "   ".join(f"{k:>24}" for k in KINDS),
    ]
    for name, branch in report["branches"].items():
        cells = [
            f"{s['ms']:6.2f} ({s['share']:4.0%}, {s['ops']:3.0f} ops)"
            for s in branch["kinds"].values()
        ]
        lines.append(
            f"{name:8} {branch['wall_ms']:6.2f} {branch['timed_ms']:6.2f}   "
            + "   ".join(f"{cell:>24}" for cell in cells)
        )
    fixed = ", ".join(f"{name} {ms:.2f} ms" for name, ms in report["fixed"].items())
    lines += [f"the same branches with {TINY_HIDDEN}-unit hidden layers (their fixed cost): "
              f"{fixed}", ""]
    for name, branch in report["branches"].items():
        lines.append(f"{name}'s costliest ops (ms per update, calls):")
        lines += [
            f"  {row['op']:28} {row['kind']:18} {row['ms']:6.3f} {row['calls']:4.0f}"
            for row in branch["top"]
        ]
    return "\n".join(lines)
