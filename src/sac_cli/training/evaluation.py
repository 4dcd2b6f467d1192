"""Running the policy for whole episodes without learning, optionally filmed."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

from sac_cli.agents.base import SoftActorCritic
from sac_cli.config import TrainConfig
from sac_cli.envs.make import make_env
from sac_cli.envs.video import prepare_offscreen_rendering, render_error
from sac_cli.errors import UserError
from sac_cli.seeding import eval_seeds
from sac_cli.training.checkpoint import check_writable

VIDEO_DIR = "videos"


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]

    @property
    def return_mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def return_std(self) -> float:
        return float(np.std(self.returns))

    def __add__(self, other: EvalResult) -> EvalResult:
        return EvalResult(self.returns + other.returns, self.lengths + other.lengths)


def evaluate(
    agent: SoftActorCritic, env: gym.Env, seeds: list[int], deterministic: bool = True
) -> EvalResult:
    """One episode per seed; deterministic means the policy's mean action, tanh(mu(s))."""
    returns, lengths = [], []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        total, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs, deterministic))
            total += float(reward)
            length += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(length)
    return EvalResult(returns, lengths)


def evaluate_at_step(
    agent: SoftActorCritic, env: gym.Env, cfg: TrainConfig, step: int, videos: Path | None
) -> tuple[EvalResult, Path | None]:
    """The training's evaluation at `step` (cfg.eval.episodes episodes, seeded by the run's
    seed and the step). With `videos`, the first episode is filmed on a rendering copy of
    the environment, the others run as usual: the same returns as without video (the copy
    is reset with the same seed). Returns the result and the video, if any."""
    seeds = eval_seeds(cfg.seed, step, cfg.eval.episodes)
    if videos is None:
        return evaluate(agent, env, seeds), None
    filmed, paths = record_episodes(
        agent, cfg.env.id, seeds[:1], videos, f"eval-step-{step}",
        step_limit=cfg.eval.max_episode_steps,
    )  # fmt: skip
    return filmed + evaluate(agent, env, seeds[1:]), paths[0]


def record_episodes(
    agent: SoftActorCritic,
    env_id: str,
    seeds: list[int],
    videos_dir: Path,
    name: str,
    deterministic: bool = True,
    step_limit: int | None = None,
) -> tuple[EvalResult, list[Path]]:
    """Evaluate one episode per seed on a rendering copy of the environment and keep each as
    videos_dir/<name>.mp4 (one episode) or <name>-episode-<i>.mp4. The returns equal those of
    `evaluate` with the same seeds: rendering does not touch the dynamics."""
    prepare_offscreen_rendering()
    check_writable(videos_dir)
    staging = Path(tempfile.mkdtemp(prefix=".recording-", dir=videos_dir))
    try:
        try:
            with warnings.catch_warnings():
                # The staging folder exists already (it is new and ours).
                warnings.filterwarnings("ignore", message=".*Overwriting existing videos.*")
                env = make_env(env_id, video_dir=staging, step_limit=step_limit)
        except gym.error.DependencyNotInstalled as error:
            raise render_error(env_id, error) from None
        try:
            result = evaluate(agent, env, seeds, deterministic)
        except gym.error.DependencyNotInstalled as error:
            raise render_error(env_id, error) from None
        finally:
            env.close()  # writes the last episode's video
        recorded = sorted(staging.glob("*.mp4"), key=_episode_number)
        if len(recorded) != len(seeds):
            raise UserError(f"recorded {len(recorded)} videos of {len(seeds)} episodes")
        paths = []
        for i, source in enumerate(recorded):
            target = videos_dir / (f"{name}.mp4" if len(seeds) == 1 else f"{name}-episode-{i}.mp4")
            os.replace(source, target)
            paths.append(target)
        return result, paths
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _episode_number(path: Path) -> int:
    match = re.search(r"(\d+)\.mp4$", path.name)
    return int(match.group(1)) if match else -1
