"""Learning benchmark: sac-cli against Stable-Baselines3 SAC at equal steps, evaluated alike.

    python benchmarks/learning.py --env Pendulum-v1 --steps 15000 --seeds 0 1 2 3 4 \
        --eval-every 5000 --out DIR --jobs 2 [--no-sb3] [--set KEY=VALUE ...]

For every environment and seed it runs

- sac-cli through its real command line, as a subprocess:
  ``sac-train env=ENV seed=N total_steps=STEPS eval.every=E eval.episodes=10
  logger.mode=disabled threads=1 hydra.run.dir=DIR/ENV/sac-cli/seed=N [--set overrides]``;
- Stable-Baselines3 SAC (when installed, unless ``--no-sb3``), also as a subprocess (this
  script with ``--sb3-worker``), with the hyperparameters of sac-cli's composed config
  (``sac-train ... --cfg job``): same hidden sizes and activation, learning rate, batch size,
  buffer size, tau, gamma, learning_starts, gradient steps per env step, target update
  interval, number of critics, initial temperature and target entropy (-dim(A) unless set),
  one torch thread, CPU.

Both are evaluated the same way: the deterministic policy (the squashed mean action), 10
episodes on an environment separate from the training one, every ``--eval-every`` steps and
at the end, with the episode seeds of ``sac_cli.seeding.eval_seeds(seed, step, episodes)``.
sac-cli's agent acts in [-1, 1] (envs.make_env rescales); SB3 is evaluated on the raw
gymnasium environment through ``model.predict(obs, deterministic=True)``, which maps its
squashed action to the same bounds with the same affine map. One difference in timing: SB3
calls callbacks after the environment step and before that step's gradient update, so its
evaluation at step t has seen t - learning_starts - 1 updates where sac-cli's has seen one
more.

Each run is a directory sac-plot understands (``metrics.jsonl`` plus ``.hydra/config.yaml``
and ``.hydra/overrides.yaml``): DIR/ENV/sac-cli/seed=N (written by sac-train and Hydra) and
DIR/ENV/sb3/seed=N (written here; its overrides are ``impl=sb3`` and the seed). A run whose
metrics already hold the final evaluation is not run again; an interrupted sac-cli run resumes
from its checkpoint, an interrupted SB3 run starts over.

Finally it groups the runs by implementation, plots the evaluation return (mean over seeds
and its 95% bootstrap CI, sac_cli.plot) to DIR/learning_curves.png/.svg and writes
DIR/learning.md: per environment, each implementation's number of seeds, final return (mean
and 95% CI), best return, the mean return at each evaluation step and the training speed.
The table is printed too. ``--report-only`` redoes table and plot from the runs in DIR.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from sac_cli.errors import UserError
from sac_cli.reporting import metrics
from sac_cli.reporting.figures import plot_curves
from sac_cli.reporting.runs import Group, Run, final_values, load_run
from sac_cli.reporting.stats import N_BOOTSTRAP, bootstrap_difference_ci, permutation_p
from sac_cli.reporting.tables import fmt, stat

PROG = "benchmarks/learning.py"
METRIC = "eval/return_mean"
IMPLS = ("sac-cli", "sb3")
IMPL_LABELS = {"sac-cli": "sac-cli", "sb3": "Stable-Baselines3 SAC"}
# Keys our runs always get from this script; --set may not change them.
FIXED_KEYS = (
    "env",
    "env.id",
    "seed",
    "total_steps",
    "eval.every",
    "eval.episodes",
    "logger.mode",
    "threads",
    "hydra.run.dir",
    "device",
)


@dataclass(frozen=True)
class Job:
    impl: str
    env_id: str
    seed: int
    run_dir: Path


def sac_train_command() -> list[str]:
    exe = shutil.which("sac-train", path=os.path.dirname(sys.executable)) or shutil.which(
        "sac-train"
    )
    if exe is None:
        raise UserError("sac-train is not on PATH: pip install -e . in this environment first")
    return [exe]


def our_overrides(args: argparse.Namespace, env_id: str, seed: int) -> list[str]:
    return [
        f"env={env_id}",
        f"seed={seed}",
        f"total_steps={args.steps}",
        f"eval.every={args.eval_every}",
        f"eval.episodes={args.eval_episodes}",
        "logger.mode=disabled",
        "threads=1",
        "device=cpu",
        *args.set,
    ]


def composed_config(args: argparse.Namespace, env_id: str) -> dict:
    """sac-cli's config for this env with the benchmark's overrides, as sac-train composes it."""
    cmd = [*sac_train_command(), *our_overrides(args, env_id, 0), "--cfg", "job", "--resolve"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["sac-train failed"])[-1]
        raise UserError(f"cannot compose sac-cli's config for {env_id}: {last}")
    return yaml.safe_load(proc.stdout)


def sb3_hyperparameters(cfg: dict) -> dict:
    """The SB3 SAC settings equal to sac-cli's composed config; UserError where SB3 has none."""
    agent, net, opt, temp = cfg["agent"], cfg["network"], cfg["optimizer"], cfg["temperature"]
    if agent["name"] != "sac":
        raise UserError(f"agent={agent['name']}: SB3 has only SAC 2018b (agent=sac); use --no-sb3")
    lrs = {opt["actor_lr"], opt["critic_lr"], opt["alpha_lr"]}
    if len(lrs) != 1:
        raise UserError(
            "SB3 uses one learning rate for actor, critics and temperature: set "
            "optimizer.actor_lr, critic_lr and alpha_lr equal, or use --no-sb3"
        )
    if agent["reward_scale"] != 1.0:
        raise UserError("SB3 has no reward scale: keep agent.reward_scale=1 or use --no-sb3")
    if net["log_std_min"] != -20.0 or net["log_std_max"] != 2.0:
        raise UserError("SB3 clamps log-std to [-20, 2]: keep network.log_std_min/max")
    alpha = float(temp["alpha"])
    ent_coef = f"auto_{alpha}" if temp["mode"] == "auto" else alpha
    target_entropy = temp.get("target_entropy")
    return {
        "learning_rate": float(lrs.pop()),
        "buffer_size": int(agent["buffer_size"]),
        "learning_starts": int(cfg["learning_starts"]),
        "batch_size": int(agent["batch_size"]),
        "tau": float(agent["tau"]),
        "gamma": float(agent["gamma"]),
        "train_freq": 1,
        "gradient_steps": int(agent["updates_per_step"]),
        "target_update_interval": int(agent["target_update_interval"]),
        "ent_coef": ent_coef,
        "target_entropy": "auto" if target_entropy is None else float(target_entropy),
        "hidden_sizes": [int(h) for h in net["hidden_sizes"]],
        "activation": net["activation"],
        "n_critics": int(agent["n_critics"]),
    }


# --------------------------------------------------------------------------- SB3 worker


def run_sb3(spec: dict) -> None:
    """Train SB3 SAC for one (env, seed) and write its run directory (in a subprocess)."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from torch import nn

    from sac_cli.envs import quiet_mujoco
    from sac_cli.seeding import eval_seeds

    torch.set_num_threads(1)
    quiet_mujoco()
    hp = dict(spec["hyperparameters"])
    env_id, seed, steps = spec["env_id"], spec["seed"], spec["steps"]
    every, episodes = spec["eval_every"], spec["eval_episodes"]
    run_dir = Path(spec["run_dir"])
    activations = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "elu": nn.ELU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
    }
    policy_kwargs = {
        "net_arch": hp.pop("hidden_sizes"),
        "activation_fn": activations[hp.pop("activation")],
        "n_critics": hp.pop("n_critics"),
    }

    def make() -> gym.Env:
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is out of date.*")
            return gym.make(env_id)

    env, eval_env = make(), make()
    metrics_file = (run_dir / metrics.METRICS_FILE).open("w", buffering=1)

    class Evaluate(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.start = time.perf_counter()
            self.eval_time = 0.0
            self.last_step = -1

        def _evaluate(self) -> None:
            step = self.num_timesteps
            if step == self.last_step:
                return
            self.last_step = step
            t0 = time.perf_counter()
            returns = []
            for s in eval_seeds(seed, step, episodes):
                obs, _ = eval_env.reset(seed=s)
                total, done = 0.0, False
                while not done:
                    action, _ = self.model.predict(obs, deterministic=True)
                    obs, reward, terminated, truncated, _ = eval_env.step(action)
                    total += float(reward)
                    done = terminated or truncated
                returns.append(total)
            self.eval_time += time.perf_counter() - t0
            train_time = time.perf_counter() - self.start - self.eval_time
            row = {
                "step": step,
                "eval/return_mean": float(np.mean(returns)),
                "eval/return_std": float(np.std(returns)),
                "perf/train_sps": step / train_time if train_time > 0 else math.nan,
                "time/elapsed_s": time.perf_counter() - self.start,
            }
            metrics_file.write(json.dumps(row) + "\n")
            print(f"sb3 {env_id} seed={seed} step={step} eval={row[METRIC]:.1f}", flush=True)

        def _on_step(self) -> bool:
            if episodes > 0 and (self.num_timesteps % every == 0 or self.num_timesteps == steps):
                self._evaluate()
            return True

    model = SAC(
        "MlpPolicy",
        env,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device="cpu",
        verbose=0,
        **hp,
    )
    model.learn(total_timesteps=steps, callback=Evaluate())
    metrics_file.close()
    env.close()
    eval_env.close()


# --------------------------------------------------------------------------- running


def final_step_done(run_dir: Path, steps: int) -> bool:
    path = run_dir / metrics.METRICS_FILE
    if not path.is_file():
        return False
    return any(row["step"] == steps and METRIC in row for _, _, row in metrics.rows(path))


def write_sb3_run_files(job: Job, args: argparse.Namespace, hp: dict) -> None:
    import stable_baselines3

    hydra_dir = job.run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "impl": "sb3",
        "sb3_version": stable_baselines3.__version__,
        "env": {"id": job.env_id},
        "seed": job.seed,
        "total_steps": args.steps,
        "eval": {"every": args.eval_every, "episodes": args.eval_episodes},
        "sb3": hp,
    }
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(["impl=sb3", f"seed={job.seed}"]))


def run_job(job: Job, args: argparse.Namespace, hp: dict | None) -> tuple[Job, int, float]:
    """Run one job as a subprocess with its output in run_dir/benchmark.log."""
    if final_step_done(job.run_dir, args.steps):
        print(f"[skip] {job.impl} {job.env_id} seed={job.seed}: already complete", flush=True)
        return job, 0, 0.0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if job.impl == "sac-cli":
        cmd = [
            *sac_train_command(),
            *our_overrides(args, job.env_id, job.seed),
            # Quoted: the seed=N in the path would otherwise read as a second `=`.
            f"hydra.run.dir='{job.run_dir.resolve()}'",
        ]
        job.run_dir.mkdir(parents=True, exist_ok=True)
    else:
        shutil.rmtree(job.run_dir, ignore_errors=True)
        write_sb3_run_files(job, args, hp)
        spec = {
            "env_id": job.env_id,
            "seed": job.seed,
            "steps": args.steps,
            "eval_every": args.eval_every,
            "eval_episodes": args.eval_episodes,
            "run_dir": str(job.run_dir),
            "hyperparameters": hp,
        }
        cmd = [sys.executable, os.path.abspath(__file__), "--sb3-worker", json.dumps(spec)]
    print(f"[start] {job.impl} {job.env_id} seed={job.seed}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with (job.run_dir / "benchmark.log").open("w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    elapsed = time.perf_counter() - start
    (job.run_dir / "benchmark.json").write_text(
        json.dumps({"command": cmd, "returncode": rc, "wall_s": elapsed}) + "\n"
    )
    status = "done" if rc == 0 else f"FAILED (exit {rc}, see {job.run_dir / 'benchmark.log'})"
    print(f"[{status}] {job.impl} {job.env_id} seed={job.seed} in {elapsed:.0f} s", flush=True)
    return job, rc, elapsed


# --------------------------------------------------------------------------- report


def load_groups(out: Path, envs: list[str] | None = None) -> list[Group]:
    """The runs under out/ENV/IMPL/seed=N, grouped by (env, implementation)."""
    groups: list[Group] = []
    env_dirs = sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []
    for env_dir in env_dirs:
        for impl in IMPLS:
            impl_dir = env_dir / impl
            if not impl_dir.is_dir():
                continue
            runs = [
                load_run(p, METRIC)
                for p in sorted(impl_dir.glob("seed=*"))
                if (p / metrics.METRICS_FILE).is_file()
            ]
            runs = [r for r in runs if r.values.size]
            if not runs:
                continue
            env_id = runs[0].env_id
            if envs is not None and env_id not in envs:
                continue
            runs.sort(key=lambda r: (r.seed is None, r.seed or 0))
            groups.append(Group(env_id, IMPL_LABELS[impl], (("impl", impl),), runs))
    return groups


def _train_sps(run: Run) -> float:
    """Environment steps per second of training (evaluation time left out)."""
    rows = [row for _, _, row in metrics.rows(run.path / metrics.METRICS_FILE)]
    sb3 = [r["perf/train_sps"] for r in rows if "perf/train_sps" in r]
    if sb3:
        return float(sb3[-1])
    # sac-cli logs perf/sps over each logger window (evaluations excluded where the window
    # holds none); the median over windows is robust to the windows that hold an evaluation.
    ours = [r["perf/sps"] for r in rows if "perf/sps" in r]
    return float(np.median(ours)) if ours else math.nan


def env_table(groups: list[Group], env_id: str) -> list[str]:
    panel = [g for g in groups if g.env_id == env_id]
    steps = sorted({int(s) for g in panel for r in g.runs for s in r.steps})
    header = [
        "implementation",
        "seeds",
        "final return",
        "final 95% CI",
        "best",
        *[f"@{_kilo(s)}" for s in steps],
        "train steps/s",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|---:|---:|---|---:|" + "---:|" * len(steps) + "---:|",
    ]
    for group in panel:
        runs = group.runs
        final = final_values(runs)
        best = np.array([r.values.max() for r in runs])
        at = []
        for s in steps:
            vals = [float(r.values[r.steps == s][0]) for r in runs if np.any(r.steps == s)]
            at.append(fmt(float(np.mean(vals))) if len(vals) == len(runs) else "n/a")
        sps = [_train_sps(r) for r in runs]
        cells = [
            group.label,
            str(len(runs)),
            *stat(final),
            stat(best)[0],
            *at,
            f"{np.nanmean(sps):.0f}" if np.any(np.isfinite(sps)) else "n/a",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for group in panel:
        per_seed = ", ".join(
            f"{r.seed}: {fmt(float(r.values[-1]))} (step {int(r.steps[-1])})"
            for r in group.runs
        )
        lines.append(f"- {group.label}, final return per seed: {per_seed}")
    by_impl = {dict(g.key)["impl"]: g for g in panel}
    if set(by_impl) == set(IMPLS):
        lines.append(comparison_line(*(by_impl[impl] for impl in IMPLS)))
    return lines


def comparison_line(ours: Group, theirs: Group) -> str:
    """The difference of the mean final returns, its bootstrap CI and a permutation p-value:
    what "no worse than SB3 at equal steps" is judged on."""
    a, b = final_values(ours.runs), final_values(theirs.runs)
    diff, low, high = bootstrap_difference_ci(a, b)
    p, splits = permutation_p(a, b)
    ci = f"[{fmt(low)}, {fmt(high)}]" if math.isfinite(low) else "n/a (1 seed)"
    return (
        f"- {ours.label} minus {theirs.label}, final return: {fmt(diff)}, "
        f"95% bootstrap CI {ci} (seeds resampled within each side), "
        f"permutation p = {p:.3f} (two-sided, {splits} relabellings)"
    )


def _kilo(step: int) -> str:
    return f"{step // 1000}k" if step % 1000 == 0 else str(step)


def write_report(out: Path, groups: list[Group], command: str) -> tuple[str, list[Path]]:
    if not groups:
        raise UserError(f"no finished evaluations under {out}")
    lines = [
        "# Learning benchmark: sac-cli vs Stable-Baselines3 SAC",
        "",
        f"Command: `{command}`",
        "",
        f"Metric `{METRIC}`: deterministic policy, mean return of the evaluation episodes on a "
        "separate environment, episode seeds from `sac_cli.seeding.eval_seeds(seed, step, "
        "episodes)` for both implementations. Final: each seed's last evaluation; the mean "
        f"over seeds with its 95% percentile-bootstrap CI ({N_BOOTSTRAP} resamples). "
        "Best: mean over seeds of each seed's best evaluation. @step: mean over seeds at that "
        "step. Train steps/s: environment steps per second while training, evaluation "
        "excluded (one torch thread, CPU, runs sharing the machine). The last line compares "
        "the final returns: sac-cli's mean minus SB3's, its 95% bootstrap CI (each side's "
        "seeds resampled on their own) and the two-sided permutation p-value of that "
        "difference.",
    ]
    for env_id in sorted({g.env_id for g in groups}):
        lines += ["", f"## {env_id}", "", *env_table(groups, env_id)]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    paths = plot_curves(groups, METRIC, out / "learning_curves")
    table = out / "learning.md"
    table.write_text(text)
    return text, [*paths, table]


# --------------------------------------------------------------------------- command line


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
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(lambda j: run_job(j, args, hps[j.env_id]), jobs))
        failed = [j for j, rc, _ in results if rc != 0]
        print(f"{len(jobs)} runs in {time.perf_counter() - start:.0f} s", flush=True)
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
