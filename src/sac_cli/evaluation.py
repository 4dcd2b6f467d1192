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

from sac_cli.checkpoint import check_writable
from sac_cli.envs import make_env, quiet_mujoco
from sac_cli.errors import UserError
from sac_cli.sac import SoftActorCritic

VIDEO_DIR = "videos"
VIDEO_PACKAGES = "pip install 'moviepy>=2,<3' 'pygame>=2.1,<3'"


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


def prepare_offscreen_rendering() -> None:
    """Without a display, MuJoCo renders through EGL and pygame (classic control) into memory.
    Must run before mujoco is first imported: it picks its OpenGL backend at import."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def _render_error(env_id: str, error: Exception) -> UserError:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = f"{type(error).__name__}: {lines[0] if lines else ''}"[:240]
    if isinstance(error, (gym.error.DependencyNotInstalled, ImportError)):
        hint = f"install the video dependencies: {VIDEO_PACKAGES}"
    else:
        hint = (
            "for MuJoCo without a display set MUJOCO_GL=egl and install EGL "
            "(Debian: apt-get install libegl1 libgl1)"
        )
    return UserError(f"cannot record videos of {env_id} ({detail}); {hint}")


def check_video_support(env_id: str) -> None:
    """Fail before any training when videos cannot be made: render one frame now."""
    prepare_offscreen_rendering()
    quiet_mujoco()
    try:
        import moviepy  # noqa: F401  (gymnasium's RecordVideo writes MP4s with it)

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is out of date.*")
            env = gym.make(env_id, render_mode="rgb_array")
    except Exception as error:
        raise _render_error(env_id, error) from None
    try:
        env.reset(seed=0)
        frame = env.render()
        if not isinstance(frame, np.ndarray):
            raise RuntimeError(f"render() returned {type(frame).__name__}, not an image")
    except Exception as error:
        raise _render_error(env_id, error) from None
    finally:
        env.close()


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
            raise _render_error(env_id, error) from None
        try:
            result = evaluate(agent, env, seeds, deterministic)
        except gym.error.DependencyNotInstalled as error:
            raise _render_error(env_id, error) from None
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
