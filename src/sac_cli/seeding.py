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
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "env": env.unwrapped.np_random.bit_generator.state,
        "action_space": env.action_space.np_random.bit_generator.state,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> dict[str, Any]:
    # The legacy generator's key array becomes a tensor: checkpoints load with weights_only=True.
    state = np.random.get_state(legacy=False)
    state["state"] = {
        "key": torch.from_numpy(state["state"]["key"].astype(np.int64)),
        "pos": int(state["state"]["pos"]),
    }
    return state


def _numpy_state_from(saved: dict[str, Any]) -> dict[str, Any]:
    state = dict(saved)
    state["state"] = {
        "key": saved["state"]["key"].numpy().astype(np.uint32),
        "pos": saved["state"]["pos"],
    }
    return state


def restore_rng_state(state: dict[str, Any], env: gym.Env) -> None:
    random.setstate(state["python"])
    np.random.set_state(_numpy_state_from(state["numpy"]))
    torch.set_rng_state(state["torch"])
    env.unwrapped.np_random.bit_generator.state = state["env"]
    env.action_space.np_random.bit_generator.state = state["action_space"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def eval_seeds(seed: int, step: int, episodes: int) -> list[int]:
    """Seeds of the evaluation episodes at `step`: fixed by (seed, step) alone, so an
    evaluation after a resume sees the same episodes as without the interruption."""
    return [int(s) for s in np.random.SeedSequence([seed, step, 1]).generate_state(episodes)]
