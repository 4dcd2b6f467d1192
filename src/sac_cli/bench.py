"""sac-bench: how fast sac-cli learns, side by side with Stable-Baselines3's SAC.

    sac-bench [--env HalfCheetah-v4] [--repeats 5] [--steps 400] [--updates 300]
              [--threads N [N ...]] [--device cpu] [--no-compile] [--no-sb3] [--quick]
              [--json PATH]

Columns, each measured on the same environment with the same hyperparameters (the paper's:
256-256 ReLU networks, batch 256, Adam 3e-4, one gradient step per environment step, a
1M-transition buffer, learned temperature):
- updates/s: gradient steps on a filled buffer, sampling included;
- env steps/s: the learning phase of training, i.e. per step: pick an action with the policy,
  step the environment, store the transition, sample, update. sac-cli's side is the loop of
  `Trainer` built from the same parts (builders.build_parts,
  MetricAccumulator, with their means read once per segment, as a log row does); SB3's is
  `model.learn(steps, reset_num_timesteps=False)` after its `learning_starts` random steps;
- steps/CPU-s: the same per second of process CPU time (all its threads): less sensitive
  than wall-clock time to other processes sharing the cores, and the cost of the work.
Every variant is set up and warmed up first (compiling, for the compiled one), then timed in
interleaved segments (sac-cli eager, compiled, SB3, then again, for each thread count) so
that a busy machine slows them alike; the table shows the median over repeats. All run in
one process with the same torch thread count and allocator settings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sac_cli.agents import keep_freed_memory
from sac_cli.builders import build_parts
from sac_cli.config import AgentConfig, EnvConfig, NetworkConfig, TrainConfig
from sac_cli.device import resolve_device
from sac_cli.envs import env_dims, make_env
from sac_cli.errors import UserError
from sac_cli.files import atomic_write_text
from sac_cli.logger import MetricAccumulator
from sac_cli.replay import ReplayBuffer
from sac_cli.update import branch_threads_by_default

PROG = "sac-bench"
MEMORY_ENV = ("Humanoid-v4", 376, 17)  # the memory figure: obs and action sizes
MEMORY_CAPACITY = 1_000_000


@dataclass
class Settings:
    env_id: str
    device: torch.device
    hidden: list[int]
    batch_size: int
    buffer_size: int
    learning_starts: int
    steps: int
    updates: int
    repeats: int
    warmup_steps: int
    warmup_updates: int
    seed: int


@dataclass
class Result:
    variant: str  # eager, compiled or sb3
    name: str
    threads: int
    branches: int | None = None  # sac-cli's loss branches at once: 2 in two threads
    updates_per_s: list[float] = field(default_factory=list)
    steps_per_s: list[float] = field(default_factory=list)
    # The same per second of process CPU time.
    updates_per_cpu_s: list[float] = field(default_factory=list)
    steps_per_cpu_s: list[float] = field(default_factory=list)
    setup_s: float = math.nan  # building, random steps and warm-up (compiling, if any)

    def median(self, key: str) -> float:
        values = getattr(self, key)
        return statistics.median(values) if values else math.nan


class Runner:
    """One variant: `updates(n)` and `steps(n)` run n of each and return the seconds taken
    (wall clock, process CPU time)."""

    name: str

    def use_threads(self, n: int) -> None:
        """Run the next segments with n torch threads."""
        torch.set_num_threads(n)

    @property
    def branches(self) -> int | None:
        """Loss branches run at once (sac-cli only)."""
        return None

    def updates(self, n: int) -> tuple[float, float]:
        raise NotImplementedError

    def steps(self, n: int) -> tuple[float, float]:
        raise NotImplementedError


class Timer:
    """Wall-clock and process CPU seconds of a block (the device is synchronised at both
    ends)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> Timer:
        _synchronize(self.device)
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        _synchronize(self.device)
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    @property
    def seconds(self) -> tuple[float, float]:
        return self.wall, self.cpu


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SacCliRunner(Runner):
    def __init__(self, settings: Settings, compiled: bool) -> None:
        self.name = "sac-cli compiled" if compiled else "sac-cli eager"
        self.settings = settings
        cfg = TrainConfig(
            env=EnvConfig(id=settings.env_id),
            agent=AgentConfig(batch_size=settings.batch_size, buffer_size=settings.buffer_size),
            network=NetworkConfig(hidden_sizes=list(settings.hidden)),
            seed=settings.seed,
            learning_starts=settings.learning_starts,
            compile=compiled,
        )
        self.cfg = cfg
        # The parts sac-train builds (the branch threads are set per thread count below).
        parts = build_parts(cfg, settings.device)
        self.env, self.agent, self.engine = parts.env, parts.agent, parts.engine
        self.buffer, self.obs = parts.buffer, parts.first_obs
        self.metrics = MetricAccumulator()
        for _ in range(settings.learning_starts):  # the uniform-random phase, as sac-train
            self._env_step(self.env.action_space.sample())

    def use_threads(self, n: int) -> None:
        torch.set_num_threads(n)
        # What sac-train would choose with n threads.
        self.engine.set_branch_threads(branch_threads_by_default(self.settings.device))

    @property
    def branches(self) -> int | None:
        return 2 if self.engine.branch_threads else 1

    def _env_step(self, action: np.ndarray) -> None:
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        self.buffer.add(self.obs, action, reward, next_obs, terminated, truncated)
        self.obs = self.env.reset()[0] if terminated or truncated else next_obs

    def updates(self, n: int) -> tuple[float, float]:
        engine, buffer, batch_size = self.engine, self.buffer, self.cfg.agent.batch_size
        with Timer(self.settings.device) as timer:
            for _ in range(n):
                self.metrics.add(engine.update(buffer.sample(batch_size)))
            self.metrics.pop_means()  # the host reads the metrics, as a log row does
        return timer.seconds

    def steps(self, n: int) -> tuple[float, float]:
        agent, engine = self.agent, self.engine
        buffer, batch_size = self.buffer, self.cfg.agent.batch_size
        with Timer(self.settings.device) as timer:
            for _ in range(n):
                self._env_step(agent.act(self.obs))
                self.metrics.add(engine.update(buffer.sample(batch_size)))
            self.metrics.pop_means()
        return timer.seconds


class SB3Runner(Runner):
    def __init__(self, settings: Settings) -> None:
        import gymnasium as gym
        import stable_baselines3
        from stable_baselines3 import SAC as SB3SAC

        self.name = f"stable-baselines3 {stable_baselines3.__version__} SAC"
        self.settings = settings
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is out of date.*")
            env = gym.make(settings.env_id)
        self.model = SB3SAC(
            "MlpPolicy",
            env,
            learning_rate=3e-4,
            buffer_size=settings.buffer_size,
            learning_starts=settings.learning_starts,
            batch_size=settings.batch_size,
            tau=0.005,
            gamma=0.99,
            train_freq=1,
            gradient_steps=1,
            ent_coef="auto",
            target_update_interval=1,
            policy_kwargs={"net_arch": list(settings.hidden)},
            device=settings.device,
            seed=settings.seed,
            verbose=0,
        )
        self.model.learn(settings.learning_starts)  # the random phase: no gradient step yet

    def updates(self, n: int) -> tuple[float, float]:
        with Timer(self.settings.device) as timer:
            self.model.train(gradient_steps=n, batch_size=self.settings.batch_size)
        return timer.seconds

    def steps(self, n: int) -> tuple[float, float]:
        with Timer(self.settings.device) as timer:
            self.model.learn(n, reset_num_timesteps=False)
        return timer.seconds


def sb3_version() -> str | None:
    try:
        import stable_baselines3
    except ImportError:
        return None
    return stable_baselines3.__version__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MuJoCo v4 and torch.compile warnings say nothing about speed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.getLogger("torch").level
        logging.getLogger("torch").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("torch").setLevel(level)


# Row keys of the ratios to the SB3 row of the same thread count.
SB3_RATIOS = {
    "updates_per_s": "updates_vs_sb3",
    "steps_per_s": "steps_vs_sb3",
    "steps_per_cpu_s": "steps_per_cpu_vs_sb3",
}


def run(
    settings: Settings,
    variants: Sequence[str],
    threads: Sequence[int],
    say: Callable[[str], None],
) -> list[Result]:
    """Set up and warm up every variant, then time them in interleaved repeats: for each
    repeat and each thread count, every variant once."""
    factories: dict[str, Callable[[], Runner]] = {
        "eager": lambda: SacCliRunner(settings, compiled=False),
        "compiled": lambda: SacCliRunner(settings, compiled=True),
        "sb3": lambda: SB3Runner(settings),
    }
    runners: dict[str, Runner] = {}
    setup_s: dict[str, float] = {}
    for variant in variants:
        say(f"setting up {variant} ...")
        start = time.perf_counter()
        runner = factories[variant]()
        runner.use_threads(threads[0])
        runner.updates(settings.warmup_updates)
        runner.steps(settings.warmup_steps)
        runners[variant], setup_s[variant] = runner, time.perf_counter() - start
    results = []
    for n in threads:
        for variant, runner in runners.items():
            runner.use_threads(n)
            if n != threads[0]:  # a first segment at this thread count starts its threads
                runner.updates(max(1, settings.warmup_updates // 4))
            results.append(
                Result(variant, runner.name, n, runner.branches, setup_s=setup_s[variant])
            )
    for repeat in range(settings.repeats):
        for result in results:
            runner = runners[result.variant]
            runner.use_threads(result.threads)
            wall, cpu = runner.updates(settings.updates)
            result.updates_per_s.append(settings.updates / wall)
            result.updates_per_cpu_s.append(settings.updates / cpu)
            wall, cpu = runner.steps(settings.steps)
            result.steps_per_s.append(settings.steps / wall)
            result.steps_per_cpu_s.append(settings.steps / cpu)
        say(
            f"repeat {repeat + 1}/{settings.repeats}: "
            + ", ".join(
                f"{r.variant} ({r.threads}t) {r.steps_per_s[-1]:.1f} steps/s" for r in results
            )
        )
    return results


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
        f"{'vs SB3':>7}   {'steps/CPU-s':>11} {'vs SB3':>7} {'setup s':>8}"
    )
    lines += [header, "-" * len(header)]

    def ratio(row: dict[str, Any], key: str) -> str:
        return _fmt(row[key], 2) + "x" if key in row else ""

    for row in report["results"]:
        branches = row["branches"] if row["branches"] is not None else "-"
        lines.append(
            f"{row['name']:30} {row['threads']:>7} {branches:>8} {_fmt(row['updates_per_s']):>10} "
            f"{_fmt(row['steps_per_s']):>12} {ratio(row, 'steps_vs_sb3'):>7}   "
            f"{_fmt(row['steps_per_cpu_s']):>11} {ratio(row, 'steps_per_cpu_vs_sb3'):>7} "
            f"{_fmt(row['setup_s'], 0):>8}"
        )
    if report["sb3"] is None:
        lines.append(
            "stable-baselines3 is not installed: no SB3 rows "
            "(pip install 'sac-cli[bench]' or 'stable-baselines3>=2.4,<3')"
        )
    for name, value in report["ratios"].items():
        lines.append(f"{name}: {value:.2f}x")
    lines.append("")
    lines.append("replay buffer, 1M transitions (each observation stored once):")
    for env, mem in report["memory"].items():
        lines.append(
            f"  {env} (obs {mem['obs_dim']}, act {mem['act_dim']}): "
            f"{mem['bytes_per_transition']:,.0f} bytes/transition, {mem['mib_at_1m']:,.0f} MiB; "
            f"{mem['ratio']:.2f}x of storing s' too ({mem['two_copies_bytes_per_transition']:,} B)"
        )
    return "\n".join(lines)


def build_report(
    settings: Settings, results: list[Result], obs_dim: int, act_dim: int, loads: list[str]
) -> dict[str, Any]:
    by_key = {(r.variant, r.threads): r for r in results}
    rows: list[dict[str, Any]] = []
    ratios: dict[str, float] = {}
    for r in results:
        row: dict[str, Any] = {
            "name": r.name,
            "variant": r.variant,
            "threads": r.threads,
            "branches": r.branches,
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
        sb3 = by_key.get(("sb3", r.threads))
        if sb3 is not None:
            for key, name in SB3_RATIOS.items():
                row[name] = r.median(key) / sb3.median(key)
            if r is not sb3:
                ratios[f"{r.name} / SB3, updates/s ({r.threads} threads)"] = (
                    r.median("updates_per_s") / sb3.median("updates_per_s")
                )
        rows.append(row)
    best = {}
    for r in results:
        if r.variant not in best or r.median("steps_per_s") > best[r.variant].median("steps_per_s"):
            best[r.variant] = r
    if "sb3" in best and len(by_key) > len(best):  # several thread counts: best against best
        sb3 = best["sb3"]
        for variant in ("eager", "compiled"):
            if variant in best:
                r = best[variant]
                ratios[
                    f"{r.name} at its best ({r.threads} threads) / SB3 at its best "
                    f"({sb3.threads} threads), env steps/s"
                ] = r.median("steps_per_s") / sb3.median("steps_per_s")
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
        "sb3": sb3_version(),
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
        "memory": memory_figures(obs_dim, act_dim, settings.env_id),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Throughput of sac-cli's SAC update and learning loop (eager and "
        "compiled), side by side with Stable-Baselines3 SAC when it is installed.",
    )
    parser.add_argument("--env", default="HalfCheetah-v4", help="Gymnasium id")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed repeats")
    parser.add_argument("--steps", type=int, default=400, help="learning steps per repeat")
    parser.add_argument("--updates", type=int, default=300, help="updates per repeat")
    parser.add_argument("--learning-starts", type=int, default=1000, help="random steps first")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256], metavar="SIZE")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--buffer-size", type=int, default=1_000_000)
    parser.add_argument(
        "--threads", type=int, nargs="+", default=None, metavar="N",
        help="torch thread counts to measure, each for every variant (default: 1 and torch's "
        "own choice; with 1 thread sac-cli runs its two loss branches on two cores)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variant")
    parser.add_argument("--no-sb3", action="store_true", help="skip Stable-Baselines3")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 1 repeat of a few steps (numbers are not meaningful)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.steps, args.updates = 1, 20, 10
        args.learning_starts = min(args.learning_starts, max(2 * args.batch_size, 300))
    positive = ["repeats", "steps", "updates", "batch_size", "buffer_size"]
    for name in positive:
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.threads is not None and min(args.threads) <= 0:
        parser.error("--threads must be positive")
    if min(args.hidden) <= 0:
        parser.error("--hidden sizes must be positive")
    if args.learning_starts < args.batch_size:
        parser.error("--learning-starts must be at least --batch-size (the first batch)")
    if args.buffer_size < args.learning_starts + 2:
        parser.error("--buffer-size must exceed --learning-starts")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        report = bench(args)
    except UserError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
    print(table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(report, indent=2) + "\n", args.json)
        print(f"wrote {args.json}")


def bench(args: argparse.Namespace) -> dict[str, Any]:
    threads = list(dict.fromkeys(args.threads or [1, torch.get_num_threads()]))
    device = resolve_device(args.device)
    keep_freed_memory()  # as build_agent does; set first, so that SB3 runs with it too
    with _quiet():
        probe = make_env(args.env)
        obs_dim, act_dim = env_dims(probe)
        probe.close()
    settings = Settings(
        env_id=args.env,
        device=device,
        hidden=list(args.hidden),
        batch_size=args.batch_size,
        buffer_size=args.buffer_size,
        learning_starts=args.learning_starts,
        steps=args.steps,
        updates=args.updates,
        repeats=args.repeats,
        warmup_steps=max(5, args.steps // 4),
        warmup_updates=max(5, args.updates // 4),
        seed=args.seed,
    )
    variants = ["eager"] + ([] if args.no_compile else ["compiled"])
    if not args.no_sb3 and sb3_version() is not None:
        variants.append("sb3")

    def say(message: str) -> None:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)

    loads = [_load()]
    before = torch.get_num_threads()
    try:
        with _quiet():
            results = run(settings, variants, threads, say)
    finally:
        torch.set_num_threads(before)
    loads.append(_load())
    return build_report(settings, results, obs_dim, act_dim, loads)


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
