"""SlowPendulum-v0 (`env.id=slow_env:SlowPendulum-v0`): Pendulum with a floor on its step
time, so that a run lasts at least a known time on any machine (the time-limit test needs
its job still training when SLURM's signal comes)."""

from __future__ import annotations

import time

import gymnasium as gym
from gymnasium.envs.classic_control.pendulum import PendulumEnv

STEP_S = 0.02


class SlowPendulum(PendulumEnv):
    def step(self, action):
        time.sleep(STEP_S)
        return super().step(action)


if "SlowPendulum-v0" not in gym.registry:
    gym.register("SlowPendulum-v0", entry_point=SlowPendulum, max_episode_steps=200)
