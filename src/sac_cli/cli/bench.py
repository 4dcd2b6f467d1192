"""`sac-bench`: how fast sac-cli learns, side by side with Stable-Baselines3's SAC and sbx
(SB3's JAX port) when they are installed.

    sac-bench [--env HalfCheetah-v4] [--repeats 5] [--steps 400] [--updates 300]
              [--threads N [N ...]] [--device cpu] [--no-compile] [--no-sb3] [--no-sbx]
              [--quick] [--json PATH]
    sac-bench --ops [--env ...] [--hidden ...] [--batch-size ...] [--updates ...] [--json PATH]

Columns, each measured on the same environment with the same hyperparameters (the paper's:
256-256 ReLU networks, batch 256, Adam 3e-4, one gradient step per environment step, a
1M-transition buffer, learned temperature):
- updates/s: gradient steps on a filled buffer, sampling included;
- env steps/s: the learning phase of training, i.e. per step: pick an action with the policy,
  step the environment, store the transition, sample, update. sac-cli's side is the loop of
  `Trainer` built from the same parts (builders.build_parts,
  MetricAccumulator, with their means read once per segment, as a log row does); SB3's and
  sbx's are `model.learn(steps, reset_num_timesteps=False)` after their `learning_starts`
  random steps (sbx's jit compilation happens in its warm-up, outside the timed segments);
- steps/CPU-s: the same per second of process CPU time (all its threads): less sensitive
  than wall-clock time to other processes sharing the cores, and the cost of the work.
Every variant is set up and warmed up first (compiling, for the compiled one), then timed in
interleaved segments (sac-cli eager, compiled, SB3, sbx, then again, for each thread count)
so that a busy machine slows them alike; the table shows the median over repeats and each
row's ratio to the fastest peer. All run in one process with the same torch thread count and
allocator settings (JAX keeps its own thread pool: pin the process with taskset for a
one-core figure).

`--ops` instead shows where each loss branch's time goes, op by op (sac_cli.bench.ops).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sac_cli.bench.ops import op_breakdown, ops_table
from sac_cli.bench.peers import peer_version, sb3_version
from sac_cli.bench.report import PROG, build_report, table
from sac_cli.bench.runners import Settings
from sac_cli.bench.timing import load_average, quiet, run
from sac_cli.device import keep_freed_memory, resolve_device
from sac_cli.envs.make import env_dims, make_env
from sac_cli.errors import UserError
from sac_cli.files import atomic_write_text


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Throughput of sac-cli's SAC update and learning loop (eager and "
        "compiled), side by side with Stable-Baselines3 SAC and sbx (SB3 in JAX) when they are "
        "installed, each row with its ratio to the fastest peer.",
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
        "own choice; with 1 thread sac-cli runs its two loss branches on two cores, which is "
        "what sac-train chooses on CPU: its row, compiled or eager as compile=auto chooses for "
        "a long run here, is marked *)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variant")
    parser.add_argument("--no-sb3", action="store_true", help="skip Stable-Baselines3")
    parser.add_argument("--no-sbx", action="store_true", help="skip sbx (SB3 in JAX)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 1 repeat of a few steps (numbers are not meaningful)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the results as JSON")
    parser.add_argument("--ops", action="store_true",
                        help="instead: where each loss branch's time goes, op by op, over "
                        "--updates updates (CPU, one thread; no peers)")
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
        if args.ops:
            with quiet():
                report = op_breakdown(settings_from(args), args.updates)
        else:
            report = bench(args)
    except UserError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        sys.exit(130)
    print(ops_table(report) if args.ops else table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(report, indent=2) + "\n", args.json)
        print(f"wrote {args.json}")


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        env_id=args.env,
        device=resolve_device(args.device),
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


def bench(args: argparse.Namespace) -> dict[str, Any]:
    threads = list(dict.fromkeys(args.threads or [1, torch.get_num_threads()]))
    settings = settings_from(args)  # a bad device is said before the environment is built
    keep_freed_memory()  # as build_agent does; set first, so that SB3 runs with it too
    with quiet():
        probe = make_env(args.env)
        obs_dim, act_dim = env_dims(probe)
        probe.close()
    variants = ["eager"] + ([] if args.no_compile else ["compiled"])
    if not args.no_sb3 and sb3_version() is not None:
        variants.append("sb3")
    if not args.no_sbx and peer_version("sbx") is not None:
        variants.append("sbx")

    def say(message: str) -> None:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)

    loads = [load_average()]
    before = torch.get_num_threads()
    try:
        with quiet():
            results = run(settings, variants, threads, say)
    finally:
        torch.set_num_threads(before)
    loads.append(load_average())
    return build_report(settings, results, obs_dim, act_dim, loads)


if __name__ == "__main__":
    main()
