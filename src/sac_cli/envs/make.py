"""Gymnasium environments with actions rescaled to [-1, 1] and episode statistics; the
MuJoCo settings for quiet logs and good videos."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np

from sac_cli.envs import dmc
from sac_cli.errors import UserError

_mujoco_quieted = False


def quiet_mujoco() -> None:
    """Send MuJoCo's warnings to Python's warnings instead of MUJOCO_LOG.TXT in the user's cwd
    (the v4 task files trigger one through the deprecated `settotalmass`)."""
    global _mujoco_quieted
    if _mujoco_quieted:
        return
    try:
        import mujoco
    except ImportError:
        return
    mujoco.set_mju_user_warning(_mujoco_warning)
    _mujoco_quieted = True


def _mujoco_warning(message: str) -> None:
    # The v4 task files use `settotalmass`, deprecated in MuJoCo 3.3: noise for the user, who
    # chose the v4 task on purpose.
    if "settotalmass" not in message:
        warnings.warn(f"MuJoCo: {message.strip()}", stacklevel=1)


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of `env_id`; a `module:Env-v0` id imports `module` first (which
    registers the environment), as gym.make does: only for ids the user names."""
    module, _, name = env_id.rpartition(":")
    if dmc.is_dm_control(name):
        dmc.register_dm_control(env_id)
    if module:
        try:
            importlib.import_module(module)
        except Exception as error:  # any error of the user's module, raised at import
            raise UserError(
                f"env.id={env_id}: cannot import {module} ({type(error).__name__}: {error}); "
                "the module before ':' must be importable and register the environment"
            ) from None
    try:
        return gym.spec(name)
    except gym.error.Error as error:
        example = " such as dm_control/cheetah-run-v0" if dmc.is_dm_control(name) else ""
        raise UserError(
            f"unknown environment id '{env_id}' ({error}): pick a conf/env option "
            f"(see sac-train --help) or a registered Gymnasium id{example} via env.id=<id>"
        ) from None


def gym_make(env_id: str, render: bool = False, **kwargs: object) -> gym.Env:
    """gym.make of a checked id, rendering into arrays when asked; a dm_control task filmed
    like a MuJoCo one (envs.dmc.RENDER_KWARGS, real-time frame rate)."""
    mode = "rgb_array" if render else None
    with warnings.catch_warnings():
        # Gymnasium warns that v4 MuJoCo tasks are out of date; they stay supported here.
        warnings.filterwarnings("ignore", message=".*is out of date.*")
        if not dmc.is_dm_control(env_id):
            return gym.make(env_id, render_mode=mode, **kwargs)
        try:
            env = gym.make(env_id, render_mode=mode,
                           render_kwargs=dmc.RENDER_KWARGS if render else None, **kwargs)
        except Exception as error:  # dm_control's own, from building the task's physics
            raise dmc.make_error(env_id, error) from None
    dmc.play_in_real_time(env)
    return env


def make_env(
    env_id: str, video_dir: Path | None = None, step_limit: int | None = None
) -> gym.Env:
    """The environment as the agent sees it: Box actions in [-1, 1], episode statistics in
    `info["episode"]` at episode ends. Seeding happens at the first reset (see seeding.py).
    step_limit: episodes of an environment without a time limit of its own end (truncated)
    after that many steps; an environment's own limit always stands."""
    spec = check_env_id(env_id)
    quiet_mujoco()
    kwargs = {}
    if step_limit is not None and spec.max_episode_steps is None:
        kwargs["max_episode_steps"] = step_limit
    env = gym_make(env_id, render=video_dir is not None, **kwargs)
    if isinstance(env.observation_space, gym.spaces.Dict):
        # DeepMind Control's observations (position, velocity, ...): one vector, in the order
        # of the space's keys.
        env = gym.wrappers.FlattenObservation(env)
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        env.close()
        raise UserError(
            f"{env_id} has a {type(space).__name__} action space; SAC needs continuous (Box) "
            "actions: choose a continuous-control task such as Pendulum-v1 or HalfCheetah-v4"
        )
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        env.close()
        raise UserError(f"{env_id} has unbounded actions; SAC squashes actions into finite bounds")
    if len(env.observation_space.shape or ()) != 1:
        env.close()
        raise UserError(
            f"{env_id} has observations of shape {env.observation_space.shape}; "
            "sac-cli's MLP networks need flat vector observations"
        )
    if video_dir is not None:
        film_mujoco_well(env)
        env = gym.wrappers.RecordVideo(
            env, str(video_dir), episode_trigger=lambda _: True, disable_logger=True
        )
    env = gym.wrappers.RecordEpisodeStatistics(env)
    bound = np.ones(space.shape, dtype=space.dtype)  # dm_control acts in float64
    env = gym.wrappers.RescaleAction(env, -bound, bound)
    return env


def env_dims(env: gym.Env) -> tuple[int, int]:
    return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))


def film_mujoco_well(env: gym.Env) -> None:
    """For a MuJoCo task's video: its model's tracking camera ("track", which follows the
    body's centre of mass) where it has one, so that the body stays in frame however far it
    runs; and no shadows or reflections, which take most of a frame's time with software
    OpenGL (EGL without a GPU: HalfCheetah 54 -> 15 ms a frame at 480x480)."""
    renderer = getattr(env.unwrapped, "mujoco_renderer", None)
    if renderer is None:
        return
    import mujoco

    camera = mujoco.mj_name2id(env.unwrapped.model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
    if camera >= 0:
        renderer.camera_id = camera
    viewer = renderer._get_viewer("rgb_array")  # created here rather than at the first frame
    for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
        viewer.scn.flags[flag] = 0
