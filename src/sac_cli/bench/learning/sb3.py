"""The peer: Stable-Baselines3 SAC with the hyperparameters of sac-cli's composed config, and
the worker that trains it for one (environment, seed) in a subprocess."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from sac_cli.bench.learning.jobs import METRIC
from sac_cli.errors import UserError
from sac_cli.reporting import metrics


def sb3_hyperparameters(cfg: dict) -> dict:
    """The SB3 SAC settings equal to sac-cli's composed config; UserError where SB3 has none."""
    agent, net, opt, temp = cfg["agent"], cfg["network"], cfg["optimizer"], cfg["temperature"]
    if agent["name"] != "sac":
        raise UserError(f"agent={agent['name']}: SB3 has only SAC 2018b (agent=sac); use --no-sb3")
    lrs = {opt["actor_lr"], opt["critic_lr"], opt["alpha_lr"]}
    if len(lrs) != 1:
        raise UserError(
            "SB3 uses one learning rate for actor, critics and temperature: set "
            "optimizer.actor_lr, critic_lr and alpha_lr equal, or use --no-sb3"
        )
    if agent["reward_scale"] != 1.0:
        raise UserError("SB3 has no reward scale: keep agent.reward_scale=1 or use --no-sb3")
    if net["log_std_min"] != -20.0 or net["log_std_max"] != 2.0:
        raise UserError("SB3 clamps log-std to [-20, 2]: keep network.log_std_min/max")
    alpha = float(temp["alpha"])
    ent_coef = f"auto_{alpha}" if temp["mode"] == "auto" else alpha
    target_entropy = temp.get("target_entropy")
    return {
        "learning_rate": float(lrs.pop()),
        "buffer_size": int(agent["buffer_size"]),
        "learning_starts": int(cfg["learning_starts"]),
        "batch_size": int(agent["batch_size"]),
        "tau": float(agent["tau"]),
        "gamma": float(agent["gamma"]),
        "train_freq": 1,
        "gradient_steps": int(agent["updates_per_step"]),
        "target_update_interval": int(agent["target_update_interval"]),
        "ent_coef": ent_coef,
        "target_entropy": "auto" if target_entropy is None else float(target_entropy),
        "hidden_sizes": [int(h) for h in net["hidden_sizes"]],
        "activation": net["activation"],
        "n_critics": int(agent["n_critics"]),
    }


def run_sb3(spec: dict) -> None:
    """Train SB3 SAC for one (env, seed) and write its run directory (in a subprocess)."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from torch import nn

    from sac_cli.envs.make import quiet_mujoco
    from sac_cli.seeding import eval_seeds

    torch.set_num_threads(1)
    quiet_mujoco()
    hp = dict(spec["hyperparameters"])
    env_id, seed, steps = spec["env_id"], spec["seed"], spec["steps"]
    every, episodes = spec["eval_every"], spec["eval_episodes"]
    run_dir = Path(spec["run_dir"])
    activations = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "elu": nn.ELU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
    }
    policy_kwargs = {
        "net_arch": hp.pop("hidden_sizes"),
        "activation_fn": activations[hp.pop("activation")],
        "n_critics": hp.pop("n_critics"),
    }

    def make() -> gym.Env:
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is out of date.*")
            return gym.make(env_id)

    env, eval_env = make(), make()
    metrics_file = (run_dir / metrics.METRICS_FILE).open("w", buffering=1)

    class Evaluate(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.start = time.perf_counter()
            self.eval_time = 0.0
            self.last_step = -1

        def _evaluate(self) -> None:
            step = self.num_timesteps
            if step == self.last_step:
                return
            self.last_step = step
            t0 = time.perf_counter()
            returns = []
            for s in eval_seeds(seed, step, episodes):
                obs, _ = eval_env.reset(seed=s)
                total, done = 0.0, False
                while not done:
                    action, _ = self.model.predict(obs, deterministic=True)
                    obs, reward, terminated, truncated, _ = eval_env.step(action)
                    total += float(reward)
                    done = terminated or truncated
                returns.append(total)
            self.eval_time += time.perf_counter() - t0
            train_time = time.perf_counter() - self.start - self.eval_time
            row = {
                "step": step,
                "eval/return_mean": float(np.mean(returns)),
                "eval/return_std": float(np.std(returns)),
                "perf/train_sps": step / train_time if train_time > 0 else math.nan,
                "time/elapsed_s": time.perf_counter() - self.start,
            }
            metrics_file.write(json.dumps(row) + "\n")
            print(f"sb3 {env_id} seed={seed} step={step} eval={row[METRIC]:.1f}", flush=True)

        def _on_step(self) -> bool:
            if episodes > 0 and (self.num_timesteps % every == 0 or self.num_timesteps == steps):
                self._evaluate()
            return True

    model = SAC(
        "MlpPolicy",
        env,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device="cpu",
        verbose=0,
        **hp,
    )
    model.learn(total_timesteps=steps, callback=Evaluate())
    metrics_file.close()
    env.close()
    eval_env.close()
