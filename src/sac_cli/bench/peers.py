"""One adapter per peer implementation, each a Runner with the same hyperparameters as
sac-cli's (the paper's: 256-256 ReLU, batch 256, Adam 3e-4, one update per step, learned
temperature)."""

from __future__ import annotations

import warnings

from sac_cli.bench.runners import Runner, Settings, Timer


class SB3Runner(Runner):
    def __init__(self, settings: Settings) -> None:
        import gymnasium as gym
        import stable_baselines3
        from stable_baselines3 import SAC as SB3SAC

        self.name = f"stable-baselines3 {stable_baselines3.__version__} SAC"
        self.settings = settings
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is out of date.*")
            env = gym.make(settings.env_id)
        self.model = SB3SAC(
            "MlpPolicy",
            env,
            learning_rate=3e-4,
            buffer_size=settings.buffer_size,
            learning_starts=settings.learning_starts,
            batch_size=settings.batch_size,
            tau=0.005,
            gamma=0.99,
            train_freq=1,
            gradient_steps=1,
            ent_coef="auto",
            target_update_interval=1,
            policy_kwargs={"net_arch": list(settings.hidden)},
            device=settings.device,
            seed=settings.seed,
            verbose=0,
        )
        self.model.learn(settings.learning_starts)  # the random phase: no gradient step yet

    def updates(self, n: int) -> tuple[float, float]:
        with Timer(self.settings.device) as timer:
            self.model.train(gradient_steps=n, batch_size=self.settings.batch_size)
        return timer.seconds

    def steps(self, n: int) -> tuple[float, float]:
        with Timer(self.settings.device) as timer:
            self.model.learn(n, reset_num_timesteps=False)
        return timer.seconds


def sb3_version() -> str | None:
    try:
        import stable_baselines3
    except ImportError:
        return None
    return stable_baselines3.__version__
