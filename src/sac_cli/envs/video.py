"""Rendering without a display, and a check that videos can be made before training starts."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

from sac_cli.envs.make import gym_make, quiet_mujoco
from sac_cli.errors import UserError

VIDEO_PACKAGES = "pip install 'moviepy>=2,<3' 'pygame>=2.1,<3'"


def prepare_offscreen_rendering() -> None:
    """Without a display, MuJoCo renders through EGL and pygame (classic control) into memory.
    Must run before mujoco is first imported: it picks its OpenGL backend at import."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def render_error(env_id: str, error: Exception) -> UserError:
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

        env = gym_make(env_id, render=True)
    except UserError:
        raise
    except Exception as error:
        raise render_error(env_id, error) from None
    try:
        env.reset(seed=0)
        frame = env.render()
        if not isinstance(frame, np.ndarray):
            raise RuntimeError(f"render() returned {type(frame).__name__}, not an image")
    except Exception as error:
        raise render_error(env_id, error) from None
    finally:
        env.close()
