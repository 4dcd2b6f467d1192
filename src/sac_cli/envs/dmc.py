"""DeepMind Control Suite tasks through shimmy's Gymnasium bindings: `dm_control/<domain>-<task>-v0`
ids (shimmy registers them when imported), their config files conf/env/dmc/<domain>-<task>.yaml,
and how to film them."""

from __future__ import annotations

import re
import warnings

from sac_cli.errors import UserError

NAMESPACE = "dm_control"
DMC_PACKAGES = "pip install 'sac-cli[dmc]'"
# The config group folder of conf/env/ holding one file per DeepMind Control task.
CONFIG_FOLDER = "dmc"
# Any dm_control task without a file of its own (conf/env/dmc/generic.yaml).
GENERIC_OPTION = f"{CONFIG_FOLDER}/generic"

_SUITE_ID = re.compile(r"dm_control/(?P<domain>[A-Za-z_]+)-(?P<task>[A-Za-z0-9_]+)-v0")
# Videos as large as Gymnasium's MuJoCo tasks', without shadows and reflections: those take most
# of a frame's time with software OpenGL (see envs.make.film_mujoco_well).
RENDER_KWARGS = {
    "camera_id": 0,  # each suite domain's first camera: the tracking side view where it has one
    "height": 480,
    "width": 480,
    "render_flag_overrides": {"shadow": False, "reflection": False},
}


def is_dm_control(env_id: str) -> bool:
    return env_id.startswith(f"{NAMESPACE}/")


def config_option(env_id: str) -> str | None:
    """The conf/env option named after a suite id (`dm_control/cheetah-run-v0` -> `dmc/cheetah-run`;
    whether its file exists is for the caller to check); None for other ids."""
    match = _SUITE_ID.fullmatch(env_id)
    return f"{CONFIG_FOLDER}/{match['domain']}-{match['task']}" if match else None


def register_dm_control(env_id: str) -> None:
    """Import shimmy, which registers the dm_control ids with Gymnasium."""
    with warnings.catch_warnings():
        # Without a display, dm_control's search for an OpenGL backend warns about GLFW before it
        # settles on EGL (videos set MUJOCO_GL=egl first: envs.video.prepare_offscreen_rendering).
        warnings.filterwarnings("ignore", module="glfw")
        try:
            import dm_control.suite  # noqa: F401
            import shimmy  # noqa: F401
        except ImportError as error:
            raise UserError(
                f"env.id={env_id} needs DeepMind Control and shimmy ({error}): {DMC_PACKAGES}"
            ) from None


def make_error(env_id: str, error: Exception) -> UserError:
    """gym.make of a dm_control id failed: most often a MuJoCo that dm_control does not support."""
    detail = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
    hint = (
        "dm-control 1.0.x needs MuJoCo 3: pip install 'mujoco>=3.2,<4'"
        if isinstance(error, AttributeError)
        else f"check the installation: {DMC_PACKAGES}"
    )
    return UserError(f"cannot build {env_id} ({detail[:240]}); {hint}")


def play_in_real_time(env) -> None:
    """shimmy 2.0 sets render_fps to the control timestep times 1000 (10 frames a second for
    cheetah's 0.01 s): a video at one frame per control step plays in real time at 1/timestep."""
    unwrapped = env.unwrapped
    unwrapped.metadata = {**unwrapped.metadata, "render_fps": round(1.0 / unwrapped.dt)}
