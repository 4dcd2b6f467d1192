"""DeepMind Control tasks as make_env builds them, against dm_control itself: flat observations,
time-limit truncation, actions in [-1, 1], the legacy RNG saved and restored, and the conf/env
option an id maps to."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest
import torch

from sac_cli.cli.errors import env_file_for_id
from sac_cli.envs import dmc
from sac_cli.envs.make import env_dims, make_env
from sac_cli.errors import UserError
from sac_cli.seeding import restore_rng_state, rng_state

# Looked up here, imported by the tests that run: importing dm_control while pytest collects
# leaves logging bound to the collection's capture, and a later in-process Hydra run
# (tests/cli/test_eval.py's call_main) then cost pytest its stderr.
if not all(importlib.util.find_spec(name) for name in ("dm_control", "shimmy")):
    pytest.skip("DeepMind Control tasks need pip install 'sac-cli[dmc]'", allow_module_level=True)


def dm_control_observation(domain: str, task: str, seed: int) -> np.ndarray:
    """dm_control's own first observation for `seed`, its fields concatenated by name."""
    from dm_control import suite

    timestep = suite.load(domain, task, task_kwargs={"random": seed}).reset()
    return np.concatenate([np.ravel(timestep.observation[k]) for k in sorted(timestep.observation)])


@pytest.mark.parametrize(("domain", "task", "dims"),
                         [("cheetah", "run", (17, 6)), ("walker", "walk", (24, 6))])
def test_observations_are_dm_controls_fields_flattened(domain: str, task: str, dims):
    env = make_env(f"dm_control/{domain}-{task}-v0")
    obs, _ = env.reset(seed=3)
    assert env_dims(env) == dims  # walker's scalar height counts as one input
    assert obs.shape == (dims[0],)
    np.testing.assert_array_equal(obs, dm_control_observation(domain, task, 3))
    env.close()


def test_episodes_end_by_truncation_and_actions_span_minus_one_to_one():
    env = make_env("dm_control/cartpole-swingup-v0")
    space = env.action_space
    assert (space.low.tolist(), space.high.tolist()) == ([-1.0], [1.0])
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(np.ones(1))
        assert 0.0 <= reward <= 1.0
        steps += 1
    # dm_control ends the suite's episodes by time: a truncation, through which SAC bootstraps.
    assert (steps, terminated, truncated) == (1000, False, True)
    assert info["episode"]["l"] == 1000
    env.close()


def test_the_legacy_rng_of_a_task_survives_a_checkpoint():
    env = make_env("dm_control/walker-walk-v0")
    env.reset(seed=5)
    env.reset()  # the generator has moved on from its seed
    saved = io.BytesIO()
    torch.save(rng_state(env), saved)
    expected, _ = env.reset()
    env.reset()
    saved.seek(0)
    restore_rng_state(torch.load(saved, weights_only=True), env)
    again, _ = env.reset()
    np.testing.assert_array_equal(again, expected)
    env.close()


def test_frames_play_in_real_time():
    env = make_env("dm_control/cheetah-run-v0")
    # cheetah's control step is 0.01 s (shimmy itself would say 10 frames a second).
    assert env.metadata["render_fps"] == 100
    env.close()


def test_gymnasium_mujoco_tasks_build_beside_dm_control():
    """The MuJoCo that dm_control needs (below 4) also runs Gymnasium's own MuJoCo tasks."""
    make_env("dm_control/hopper-hop-v0").close()
    env = make_env("HalfCheetah-v5")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (17,) and np.all(np.isfinite(env.step(env.action_space.sample())[0]))
    env.close()


@pytest.mark.parametrize(
    ("env_id", "option"),
    [("dm_control/cheetah-run-v0", "dmc/cheetah-run"),
     ("dm_control/ball_in_cup-catch-v0", "dmc/ball_in_cup-catch"),
     ("dm_control/dog-run-v0", "dmc/generic"),  # a suite task without a file of its own
     ("dm_control/CmuHumanoidRunWalls-v0", "dmc/generic"),  # not a suite id
     ("Hopper-v4", "Hopper-v4"),
     ("MountainCarContinuous-v0", "generic")],
)
def test_env_id_chooses_its_env_file(env_id: str, option: str):
    assert env_file_for_id([f"env.id={env_id}", "seed=1"]) == [
        f"env.id={env_id}", f"env={option}", "seed=1"]


def test_every_dmc_file_names_a_registered_suite_task():
    from importlib.resources import files

    from sac_cli.envs.make import check_env_id

    options = sorted(p.name[: -len(".yaml")] for p in (files("sac_cli.conf") / "env" / "dmc")
                     .iterdir() if p.name.endswith(".yaml") and p.name != "generic.yaml")
    assert "cheetah-run" in options and len(options) >= 20
    for option in options:
        env_id = f"dm_control/{option}-v0"
        assert dmc.config_option(env_id) == f"dmc/{option}"
        check_env_id(env_id)  # registered by shimmy


def test_unknown_task_is_a_user_error():
    with pytest.raises(UserError, match="dm_control/cheetah-run-v0"):
        make_env("dm_control/cheetah-fly-v0")
