"""The one place that seeds, saves and restores every random number generator."""

from __future__ import annotations

import random
from typing import Any

import gymnasium as gym
import numpy as np
import torch


def seed_everything(seed: int, env: gym.Env) -> np.ndarray:
    """Seed python, numpy, torch (every device), the environment and its action space;
    return the first observation (the environment is seeded through its first reset)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    return obs


def rng_state(env: gym.Env) -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _legacy_state(np.random.get_state(legacy=False)),
        "torch": torch.get_rng_state(),
        "env": _generator_state(env.unwrapped.np_random),
        "action_space": env.action_space.np_random.bit_generator.state,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _generator_state(rng: np.random.Generator | np.random.RandomState) -> dict[str, Any]:
    # dm_control's tasks (through shimmy) draw from a legacy RandomState, not a Generator.
    if isinstance(rng, np.random.RandomState):
        return _legacy_state(rng.get_state(legacy=False))
    return rng.bit_generator.state


def _set_generator_state(
    rng: np.random.Generator | np.random.RandomState, state: dict[str, Any]
) -> None:
    if isinstance(rng, np.random.RandomState):
        rng.set_state(_legacy_state_from(state))
    else:
        rng.bit_generator.state = state


def _legacy_state(state: dict[str, Any]) -> dict[str, Any]:
    # A legacy generator's key array becomes a tensor: checkpoints load with weights_only=True.
    state["state"] = {
        "key": torch.from_numpy(state["state"]["key"].astype(np.int64)),
        "pos": int(state["state"]["pos"]),
    }
    return state


def _legacy_state_from(saved: dict[str, Any]) -> dict[str, Any]:
    state = dict(saved)
    state["state"] = {
        "key": saved["state"]["key"].numpy().astype(np.uint32),
        "pos": saved["state"]["pos"],
    }
    return state


def restore_rng_state(state: dict[str, Any], env: gym.Env) -> None:
    random.setstate(state["python"])
    np.random.set_state(_legacy_state_from(state["numpy"]))
    torch.set_rng_state(state["torch"])
    _set_generator_state(env.unwrapped.np_random, state["env"])
    env.action_space.np_random.bit_generator.state = state["action_space"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def eval_seeds(seed: int, step: int, episodes: int) -> list[int]:
    """Seeds of the evaluation episodes at `step`: fixed by (seed, step) alone, so an
    evaluation after a resume sees the same episodes as without the interruption."""
    return [int(s) for s in np.random.SeedSequence([seed, step, 1]).generate_state(episodes)]
