"""Real Gymnasium environments that misbehave on purpose, registered on import: the tests
name them as `helpers.envs:<id>` (sac-cli imports the module, as for any custom env)."""

from __future__ import annotations

import gymnasium as gym
from gymnasium.envs.classic_control.pendulum import PendulumEnv

# Steps after which NaNRewardPendulum's rewards turn NaN.
NAN_AFTER = 450


class NaNRewardPendulum(PendulumEnv):
    """Pendulum whose reward is NaN from its NAN_AFTER-th step on (counted over episodes)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.steps = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self.steps += 1
        return obs, float("nan") if self.steps > NAN_AFTER else reward, terminated, truncated, info


def _register(env_id: str, entry_point, max_episode_steps: int | None) -> None:
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=entry_point, max_episode_steps=max_episode_steps)


_register("NaNRewardPendulum-v0", NaNRewardPendulum, 200)
# Pendulum never terminates: without a time limit, its one episode never ends.
_register("EndlessPendulum-v0", PendulumEnv, None)
