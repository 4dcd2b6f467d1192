"""The learning benchmark's command (benchmarks/learning.py runs it; see sac_cli.bench.learning
for what it does)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sac_cli.bench.learning.jobs import (
    FIXED_KEYS,
    IMPLS,
    PROG,
    Job,
    composed_config,
    run_jobs,
)
from sac_cli.bench.learning.report import load_groups, write_report
from sac_cli.bench.learning.sb3 import run_sb3, sb3_hyperparameters
from sac_cli.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train sac-cli and Stable-Baselines3 SAC with equal settings, evaluate "
        "both alike, and write a Markdown table and learning curves.",
    )
    parser.add_argument("--env", nargs="+", default=["Pendulum-v1"], metavar="ID")
    parser.add_argument("--steps", type=int, default=15000, help="environment steps per run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--eval-every", type=int, default=5000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, help="output folder (required)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at the same time")
    parser.add_argument("--no-sb3", action="store_true", help="run sac-cli only")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a sac-train override for every run (e.g. network=small, optimizer.actor_lr=1e-3);"
        " SB3 gets the same value through sac-cli's composed config",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="only redo table and plot from --out"
    )
    parser.add_argument("--sb3-worker", metavar="JSON", help=argparse.SUPPRESS)
    return parser


def check_args(args: argparse.Namespace) -> None:
    if args.out is None:
        raise UserError("--out DIR is required")
    for name in ("steps", "eval_every", "jobs"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if args.eval_episodes < 1:
        raise UserError("--eval-episodes must be at least 1")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise UserError("--seeds must be distinct non-negative integers")
    for item in args.set:
        key = item.partition("=")[0].lstrip("+~")
        if "=" not in item:
            raise UserError(f"--set {item}: expected KEY=VALUE")
        if key in FIXED_KEYS:
            raise UserError(f"--set {item}: {key} is set by the benchmark's own options")


def run(args: argparse.Namespace) -> int:
    check_args(args)
    command = " ".join(["python", PROG, *sys.argv[1:]])
    out = args.out
    sb3 = not args.no_sb3
    if sb3:
        try:
            import stable_baselines3  # noqa: F401
        except ImportError:
            print(f"{PROG}: stable_baselines3 is not installed: sac-cli only", file=sys.stderr)
            sb3 = False
    if not args.report_only:
        hps: dict[str, dict | None] = {}
        for env_id in args.env:
            hps[env_id] = sb3_hyperparameters(composed_config(args, env_id)) if sb3 else None
        jobs = []
        for env_id in args.env:
            for seed in args.seeds:
                for impl in IMPLS if sb3 else IMPLS[:1]:
                    jobs.append(Job(impl, env_id, seed, out / env_id / impl / f"seed={seed}"))
        start = time.perf_counter()
        results = run_jobs(jobs, args, hps)
        print(f"{len(jobs)} runs in {time.perf_counter() - start:.0f} s", flush=True)
        failed = [j for j, rc, _ in results if rc != 0]
        if failed:
            names = ", ".join(f"{j.impl} {j.env_id} seed={j.seed}" for j in failed)
            print(f"{PROG}: warning: failed runs: {names}", file=sys.stderr)
    groups = load_groups(out, None if args.report_only else args.env)
    text, paths = write_report(out, groups, command)
    print(text)
    for path in paths:
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sb3_worker:
        run_sb3(json.loads(args.sb3_worker))
        return 0
    try:
        return run(args)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
