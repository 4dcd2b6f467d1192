"""sac-bench's report: medians, ratios against the peers (of the medians, and within each
repeat), the replay buffer's memory, and the table printed from them."""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch

from sac_cli.bench.peers import PEERS, peer_version
from sac_cli.bench.runners import Result, Settings
from sac_cli.device import keep_freed_memory
from sac_cli.training.compilation import COMPILE_MIN_UPDATES, choose_compile
from sac_cli.training.replay import ReplayBuffer
from sac_cli.training.update import default_torch_threads

PROG = "sac-bench"
MEMORY_ENV = ("Humanoid-v4", 376, 17)  # the memory figure: obs and action sizes
MEMORY_CAPACITY = 1_000_000

# Row keys of the ratios to a peer's row of the same thread count: <short>_vs_<peer>, and
# <short>_vs_fastest_peer against the peer that is fastest by that measure.
RATIOS = {"updates_per_s": "updates", "steps_per_s": "steps", "steps_per_cpu_s": "steps_per_cpu"}
LABELS = {"sb3": "SB3", "sbx": "sbx"}


def memory_figures(obs_dim: int, act_dim: int, env_id: str) -> dict[str, Any]:
    figures = {}
    for name, o, a in [(env_id, obs_dim, act_dim), MEMORY_ENV]:
        planned = ReplayBuffer.planned_bytes_per_transition(MEMORY_CAPACITY, o, a)
        # What storing s' beside s takes: two observations, the action, reward and two flags.
        two_copies = 4 * (2 * o + a + 1) + 2
        figures[name] = {
            "obs_dim": o,
            "act_dim": a,
            "bytes_per_transition": planned,
            "two_copies_bytes_per_transition": two_copies,
            "ratio": planned / two_copies,
            "mib_at_1m": planned * MEMORY_CAPACITY / 2**20,
        }
    return figures


def _fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


def table(report: dict[str, Any]) -> str:
    threads = ", ".join(str(n) for n in report["threads"])
    lines = [
        f"{PROG}: {report['env']} (obs {report['obs_dim']}, act {report['act_dim']}), "
        f"device {report['device']}, torch {report['torch']}, threads {threads}, "
        f"allocator keeps freed memory: {report['allocator_tuned']}",
        f"hyperparameters: {report['hyperparameters']}",
        f"{report['repeats']} interleaved repeats of {report['updates']} updates and "
        f"{report['steps']} learning steps each; medians; load average "
        f"{report['load_before']} before, {report['load_after']} after",
        "",
    ]
    header = (
        f"{'':30} {'threads':>7} {'branches':>8} {'updates/s':>10} {'env steps/s':>12} "
        f"{'vs best':>7}   {'steps/CPU-s':>11} {'vs best':>7} {'setup s':>8}"
    )
    lines += [header, "-" * len(header)]

    def ratio(row: dict[str, Any], key: str) -> str:
        return _fmt(row[key], 2) + "x" if key in row else ""

    for row in report["results"]:
        branches = row["branches"] if row["branches"] is not None else "-"
        name = row["name"] + (" *" if row.get("default") else "")
        lines.append(
            f"{name:30} {row['threads']:>7} {branches:>8} {_fmt(row['updates_per_s']):>10} "
            f"{_fmt(row['steps_per_s']):>12} {ratio(row, 'steps_vs_fastest_peer'):>7}   "
            f"{_fmt(row['steps_per_cpu_s']):>11} {ratio(row, 'steps_per_cpu_vs_fastest_peer'):>7} "
            f"{_fmt(row['setup_s'], 0):>8}"
        )
    if report["sb3"] is None:
        lines.append(
            "stable-baselines3 is not installed: no SB3 rows "
            "(pip install 'sac-cli[bench]' or 'stable-baselines3>=2.4,<3')"
        )
    if report["peers"].get("sbx") is None:
        lines.append(
            "sbx is not installed: no sbx rows (pip install 'sac-cli[bench]' or 'sbx-rl')"
        )
    if any(row.get("default") for row in report["results"]):
        lines.append(
            "*: what `sac-train` runs without flags in a run of "
            f"{COMPILE_MIN_UPDATES:,} updates or more (threads: null, compile: auto)"
        )
    lines.append("vs best: against the fastest peer (SB3, sbx) at the same thread count")
    for name, value in report["ratios"].items():
        within = report["per_repeat_ratios"].get(name)
        if within is None or report["repeats"] < 2:
            lines.append(f"{name}: {value:.2f}x")
        else:
            lines.append(
                f"{name}: {value:.2f}x (within each repeat: median {within['median']:.2f}x, "
                f"{within['low']:.2f}x-{within['high']:.2f}x)"
            )
    lines.append("")
    lines.append("replay buffer, 1M transitions (each observation stored once):")
    for env, mem in report["memory"].items():
        lines.append(
            f"  {env} (obs {mem['obs_dim']}, act {mem['act_dim']}): "
            f"{mem['bytes_per_transition']:,.0f} bytes/transition, {mem['mib_at_1m']:,.0f} MiB; "
            f"{mem['ratio']:.2f}x of storing s' too ({mem['two_copies_bytes_per_transition']:,} B)"
        )
    return "\n".join(lines)


def per_repeat_ratio(r: Result, peer: Result, key: str) -> dict[str, float]:
    """The ratio within each repeat (the two segments ran seconds apart): their median, lowest
    and highest. On a machine whose speed drifts between repeats, the median of these paired
    ratios moves less than the ratio of the two medians."""
    ratios = [a / b for a, b in zip(getattr(r, key), getattr(peer, key), strict=True) if b > 0]
    if not ratios:
        return {"median": math.nan, "low": math.nan, "high": math.nan}
    return {"median": statistics.median(ratios), "low": min(ratios), "high": max(ratios)}


def best_against_best(results: list[Result], rows: int) -> dict[str, float]:
    """With several thread counts: each variant at its fastest against each peer at its
    fastest (env steps/s)."""
    best: dict[str, Result] = {}
    for r in results:
        if r.variant not in best or r.median("steps_per_s") > best[r.variant].median("steps_per_s"):
            best[r.variant] = r
    ratios = {}
    if rows == len(best):
        return ratios
    for peer in (best[p] for p in PEERS if p in best):
        for r in (best[v] for v in ("eager", "compiled") if v in best):
            ratios[
                f"{r.name} at its best ({r.threads} threads) / {LABELS[peer.variant]} at its "
                f"best ({peer.threads} threads), env steps/s"
            ] = r.median("steps_per_s") / peer.median("steps_per_s")
    return ratios


def build_report(
    settings: Settings, results: list[Result], obs_dim: int, act_dim: int, loads: list[str]
) -> dict[str, Any]:
    by_key = {(r.variant, r.threads): r for r in results}
    default_threads = default_torch_threads(settings.device) or torch.get_num_threads()
    # sac-train without flags on a run long enough for compile=auto to compile, if it would.
    long_run = choose_compile("auto", settings.device, COMPILE_MIN_UPDATES)
    default_variant = "compiled" if long_run.on else "eager"
    rows: list[dict[str, Any]] = []
    ratios: dict[str, float] = {}
    paired: dict[str, dict[str, float]] = {}
    for r in results:
        row: dict[str, Any] = {
            "name": r.name,
            "variant": r.variant,
            "threads": r.threads,
            "branches": r.branches,
            "default": r.variant == default_variant and r.threads == default_threads,
            "updates_per_s": r.median("updates_per_s"),
            "steps_per_s": r.median("steps_per_s"),
            "updates_per_cpu_s": r.median("updates_per_cpu_s"),
            "steps_per_cpu_s": r.median("steps_per_cpu_s"),
            "setup_s": r.setup_s,
            "runs": {
                "updates_per_s": r.updates_per_s,
                "steps_per_s": r.steps_per_s,
                "updates_per_cpu_s": r.updates_per_cpu_s,
                "steps_per_cpu_s": r.steps_per_cpu_s,
            },
        }
        peers = [by_key[(p, r.threads)] for p in PEERS if (p, r.threads) in by_key]
        for peer in peers:
            for key, short in RATIOS.items():
                row[f"{short}_vs_{peer.variant}"] = r.median(key) / peer.median(key)
            if r.variant not in PEERS:
                for key, label in [("updates_per_s", "updates/s"), ("steps_per_s", "env steps/s")]:
                    name = f"{r.name} / {LABELS[peer.variant]}, {label} ({r.threads} threads)"
                    ratios[name] = r.median(key) / peer.median(key)
                    paired[name] = per_repeat_ratio(r, peer, key)
        for key, short in RATIOS.items():
            if peers:
                fastest = max(peer.median(key) for peer in peers)
                row[f"{short}_vs_fastest_peer"] = r.median(key) / fastest
        rows.append(row)
    ratios.update(best_against_best(results, len(by_key)))
    for n in sorted({r.threads for r in results}):
        eager, compiled = by_key.get(("eager", n)), by_key.get(("compiled", n))
        if eager is not None and compiled is not None:
            for key, label in [("updates_per_s", "updates/s"), ("steps_per_s", "env steps/s")]:
                ratios[f"compiled / eager, {label} ({n} threads)"] = (
                    compiled.median(key) / eager.median(key)
                )
    return {
        "env": settings.env_id,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "device": str(settings.device),
        "threads": list(dict.fromkeys(r.threads for r in results)),
        "torch": torch.__version__,
        "sb3": peer_version("sb3"),
        "peers": {variant: peer_version(variant) for variant in PEERS},
        "allocator_tuned": keep_freed_memory(),
        "hyperparameters": {
            "hidden_sizes": list(settings.hidden),
            "batch_size": settings.batch_size,
            "buffer_size": settings.buffer_size,
            "learning_starts": settings.learning_starts,
            "updates_per_step": 1,
            "lr": 3e-4,
            "temperature": "auto",
        },
        "repeats": settings.repeats,
        "steps": settings.steps,
        "updates": settings.updates,
        "load_before": loads[0],
        "load_after": loads[-1],
        "results": rows,
        "ratios": ratios,
        "per_repeat_ratios": paired,
        "memory": memory_figures(obs_dim, act_dim, settings.env_id),
    }
