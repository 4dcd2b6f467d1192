"""Running the policy for whole episodes without learning."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from sac_cli.sac import SoftActorCritic


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
