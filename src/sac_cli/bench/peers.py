"""One adapter per peer implementation, each a Runner with the same hyperparameters as
sac-cli's (the paper's: 256-256 ReLU, batch 256, Adam 3e-4, one update per step, targets
every step, learned temperature): Stable-Baselines3 and sbx, its JAX port, which share
SB3's API (`learn` for the learning phase, `train` for gradient steps).

sbx jit-compiles its update at the first call: the warm-up segments of timing.run take that
out of the timed ones. JAX runs on XLA's own thread pool, which torch's thread count does
not steer: for a one-core figure, pin the whole process (`taskset -c 0 sac-bench ...`).
"""

from __future__ import annotations

import importlib
import warnings

from sac_cli.bench.runners import Runner, Settings, Timer

# Peer variant -> (its distribution's module, its name in the table).
PEERS = {"sb3": ("stable_baselines3", "stable-baselines3"), "sbx": ("sbx", "sbx")}


def peer_version(variant: str) -> str | None:
    """The installed version of a peer, None when it is not installed."""
    try:
        module = importlib.import_module(PEERS[variant][0])
    except ImportError:
        return None
    return getattr(module, "__version__", "?")


def sb3_version() -> str | None:
    return peer_version("sb3")


class PeerRunner(Runner):
    def __init__(self, settings: Settings, variant: str) -> None:
        import gymnasium as gym

        module = importlib.import_module(PEERS[variant][0])
        self.name = f"{PEERS[variant][1]} {peer_version(variant)} SAC"
        self.settings = settings
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is out of date.*")
            env = gym.make(settings.env_id)
        # sbx updates its targets every step and has no target_update_interval.
        every_step = {"target_update_interval": 1} if variant == "sb3" else {}
        self.model = module.SAC(
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
            policy_kwargs={"net_arch": list(settings.hidden)},
            device=settings.device if variant == "sb3" else "cpu",
            seed=settings.seed,
            verbose=0,
            **every_step,
        )
        self.model.learn(settings.learning_starts)  # the random phase: no gradient step yet
        # sbx compiles its update for a fixed number of gradient steps a call: one, as in
        # learning (n in one call would compile again for each n).
        self.per_call = 1 if variant == "sbx" else None

    def updates(self, n: int) -> tuple[float, float]:
        batch_size = self.settings.batch_size
        with Timer(self.settings.device) as timer:
            if self.per_call is None:
                self.model.train(gradient_steps=n, batch_size=batch_size)
            else:
                for _ in range(n):
                    self.model.train(gradient_steps=self.per_call, batch_size=batch_size)
        return timer.seconds

    def steps(self, n: int) -> tuple[float, float]:
        with Timer(self.settings.device) as timer:
            self.model.learn(n, reset_num_timesteps=False)
        return timer.seconds
