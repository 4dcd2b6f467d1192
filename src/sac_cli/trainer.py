"""The training loop: act, store, update, evaluate, checkpoint, log; resumable.

Checkpoints are taken at episode boundaries, before the environment resets: a resumed run
restores every generator and performs that same reset, so it continues exactly as the
uninterrupted run would have. A stop signal (SIGTERM, SIGINT, SIGUSR1) mid-episode saves at
once instead and cuts the episode short as a truncation (bootstrapped, like a time limit).
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch

from sac_cli import checkpoint as ckpt
from sac_cli.agents import build_agent
from sac_cli.config import TrainConfig
from sac_cli.envs import env_dims, make_env
from sac_cli.errors import UserError
from sac_cli.evaluation import evaluate
from sac_cli.logger import MetricAccumulator, Progress, RunLogger, truncate_metrics
from sac_cli.replay import ReplayBuffer
from sac_cli.seeding import eval_seeds, restore_rng_state, rng_state, seed_everything

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Stopped(Exception):
    """Training stopped by a signal after writing a checkpoint."""

    def __init__(self, signum: int, step: int, path: Path) -> None:
        self.signum = signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint "
            f"saved to {path}; run the same command in the same run directory to resume"
        )


class Trainer:
    def __init__(
        self, cfg: TrainConfig, run_dir: Path, device: torch.device, config_dict: dict[str, Any]
    ) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.config_dict = config_dict
        self.env = make_env(cfg.env.id)
        self.eval_env = make_env(cfg.env.id)
        self.obs_dim, self.act_dim = env_dims(self.env)
        self.agent = build_agent(cfg, self.obs_dim, self.act_dim, device)
        self.buffer = ReplayBuffer(
            cfg.agent.buffer_size, self.obs_dim, self.act_dim, device, cfg.seed
        )
        self.metrics = MetricAccumulator()
        self.step = 0
        self.episodes = 0
        self.last_checkpoint_step = 0
        self.best_return = -math.inf
        self.last_eval_return = math.nan
        self.wandb_run_id: str | None = None
        self.stop_signal: int | None = None
        self.checkpoint_dir = run_dir / ckpt.CHECKPOINT_DIR

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> float:
        """Train to cfg.total_steps; return the last evaluation's mean return."""
        obs = self._start()
        self.logger = RunLogger(
            self.run_dir,
            self.config_dict,
            self.cfg.logger.mode.value,
            self.cfg.logger.project,
            self.cfg.logger.group,
            self.cfg.logger.name,
            run_id=self.wandb_run_id,
        )
        self.wandb_run_id = self.logger.run_id
        progress = Progress(self.cfg.total_steps, self.step)
        exit_code = 1
        try:
            with self._stop_on_signals():
                self._loop(obs, progress)
            if self.step >= self.cfg.total_steps:
                self._save(ckpt.LAST)
                self._save(ckpt.FINAL)
            exit_code = 0
        finally:
            progress.close()
            self.logger.close(exit_code)
            self.env.close()
            self.eval_env.close()
        return self.last_eval_return

    def _loop(self, obs, progress: Progress) -> None:
        cfg = self.cfg
        window_start, window_step = time.perf_counter(), self.step
        last_return = math.nan
        while self.step < cfg.total_steps:
            if self.step < cfg.learning_starts:
                action = self.env.action_space.sample()
            else:
                action = self.agent.act(obs)
            next_obs, reward, terminated, truncated, info = self.env.step(action)
            self.buffer.add(obs, action, reward, next_obs, terminated, truncated)
            self.step += 1
            obs = next_obs
            if self.step >= cfg.learning_starts:
                for _ in range(cfg.agent.updates_per_step):
                    self.metrics.add(self.agent.update(self.buffer.sample(cfg.agent.batch_size)))
            episode_done = terminated or truncated
            if episode_done:
                self.episodes += 1
                last_return = float(info["episode"]["r"])
                self.logger.log(
                    self.step,
                    {
                        "train/episode_return": last_return,
                        "train/episode_length": int(info["episode"]["l"]),
                    },
                )
            if self.step % cfg.logger.every == 0:
                now = time.perf_counter()
                sps = (self.step - window_step) / (now - window_start)
                window_start, window_step = now, self.step
                self.logger.log(self.step, {**self.metrics.pop_means(), "perf/sps": sps})
                progress.update(self.step, ret=last_return, sps=sps)
            if cfg.eval.episodes > 0 and (
                self.step % cfg.eval.every == 0 or self.step == cfg.total_steps
            ):
                self._evaluate()
                progress.line(
                    self.step, eval_return=self.last_eval_return, train_return=last_return
                )
            if episode_done and self.step - self.last_checkpoint_step >= cfg.checkpoint.every:
                self._save(ckpt.LAST)
            if self.stop_signal is not None:
                if not episode_done:
                    self.buffer.truncate_last(next_obs)
                path = self._save(ckpt.LAST)
                raise Stopped(self.stop_signal, self.step, path)
            if episode_done:
                obs, _ = self.env.reset()
        progress.update(self.step)

    def _evaluate(self) -> None:
        result = evaluate(
            self.agent, self.eval_env, eval_seeds(self.cfg.seed, self.step, self.cfg.eval.episodes)
        )
        self.last_eval_return = result.return_mean
        self.logger.log(
            self.step,
            {"eval/return_mean": result.return_mean, "eval/return_std": result.return_std},
        )
        if result.return_mean > self.best_return:
            self.best_return = result.return_mean
            self._save(ckpt.BEST, with_buffer=False)

    # --- checkpoints ----------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "format": ckpt.FORMAT_VERSION,
            "config": self.config_dict,
            "env_id": self.cfg.env.id,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "step": self.step,
            "episodes": self.episodes,
            "last_checkpoint_step": self.step,
            "best_return": self.best_return,
            "last_eval_return": self.last_eval_return,
            "wandb_run_id": self.wandb_run_id,
            "agent": self.agent.state_dict(),
            "num_updates": self.agent.num_updates,
            "optimizers": {name: opt.state_dict() for name, opt in self.agent.optimizers().items()},
            "metrics": {"sums": self.metrics.sums, "count": self.metrics.count},
            "rng": rng_state(self.env),
        }

    def _save(self, name: str, with_buffer: bool = True) -> Path:
        state = self._state()
        if with_buffer:
            # A buffer file per step, referenced by the checkpoint: a kill between the two
            # writes leaves the previous checkpoint and its own buffer file intact.
            buffer_name = f"buffer-{self.step}.pt"
            buffer_path = self.checkpoint_dir / buffer_name
            if not buffer_path.exists():
                ckpt.atomic_save(self.buffer.state_dict(), buffer_path)
            state["buffer_file"] = buffer_name
        path = self.checkpoint_dir / name
        ckpt.atomic_save(state, path)
        if name == ckpt.LAST:
            self.last_checkpoint_step = self.step
        if with_buffer:
            self._remove_old_buffers(keep=state["buffer_file"])
        return path

    def _remove_old_buffers(self, keep: str) -> None:
        for path in self.checkpoint_dir.glob("buffer-*.pt"):
            if path.name != keep:
                path.unlink()

    def _start(self):
        """A fresh start seeds everything; an existing last.pt in the run directory resumes."""
        last = self.checkpoint_dir / ckpt.LAST
        if not last.exists():
            return seed_everything(self.cfg.seed, self.env)
        state = ckpt.load(last, map_location=self.buffer.device)
        self._restore(state, last)
        truncate_metrics(self.run_dir / "metrics.jsonl", self.step)
        log.info("resuming from %s at step %d", last, self.step)
        obs, _ = self.env.reset()
        return obs

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        if (state["obs_dim"], state["act_dim"]) != (self.obs_dim, self.act_dim):
            raise UserError(
                f"{path} was trained on {state['env_id']} (obs {state['obs_dim']}, "
                f"action {state['act_dim']}), which does not fit {self.cfg.env.id}: "
                "use a new run directory"
            )
        try:
            self.agent.load_state_dict(state["agent"])
            for name, optimizer in self.agent.optimizers().items():
                optimizer.load_state_dict(state["optimizers"][name])
        except (RuntimeError, KeyError) as error:
            first = str(error).splitlines()[0]
            raise UserError(
                f"{path} does not match this configuration ({first[:200]}): "
                "resume with the original overrides or use a new run directory"
            ) from None
        buffer_path = self.checkpoint_dir / state["buffer_file"]
        try:
            self.buffer.load_state_dict(ckpt.load(buffer_path, self.buffer.device, kind=None))
        except ValueError as error:
            raise UserError(
                f"{buffer_path}: {error}: resume with the original agent.buffer_size"
            ) from None
        self.agent.num_updates = state["num_updates"]
        self.metrics.sums = state["metrics"]["sums"]
        self.metrics.count = state["metrics"]["count"]
        self.step = state["step"]
        self.episodes = state["episodes"]
        self.last_checkpoint_step = state["last_checkpoint_step"]
        self.best_return = state["best_return"]
        self.last_eval_return = state["last_eval_return"]
        self.wandb_run_id = state["wandb_run_id"]
        restore_rng_state(state["rng"], self.env)

    # --- signals --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _stop_on_signals(self):
        """Turn SIGTERM, SIGINT and SIGUSR1 into a checkpoint and a clean stop at the end of
        the current step (signal handlers can only be set in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self._request_stop) for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _request_stop(self, signum: int, frame) -> None:
        self.stop_signal = signum
