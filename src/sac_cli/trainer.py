"""The training loop: act, store, update, evaluate, checkpoint, log; resumable.

Checkpoints are taken at episode boundaries, before the environment resets: a resumed run
restores every generator (python, numpy, torch, the replay buffer's, the environment's and
its action space's) and performs that same reset, so it continues exactly as the
uninterrupted run would have. On CPU, a run killed at any instant (even SIGKILL) and started
again with the same command and run directory ends with bit-identical weights and the same
metrics.jsonl rows (tests/test_resume.py). Rows logged after the checkpoint are dropped on
resume and logged again; a run killed before its first checkpoint starts over (its rows are
dropped, its W&B run id, kept in checkpoints/wandb-run-id, is continued).

Where a resumed run is not bit-identical to an uninterrupted one:
- A stop signal (SIGTERM, SIGINT, SIGUSR1, or submitit's preemption signal) that arrives
  mid-episode saves at the end of the current step instead of waiting for the episode to end:
  the episode is cut there, stored as a truncation (bootstrapped, like a time limit), its
  return is not logged, and the resumed run starts a new episode. The environment's internal
  state (joint positions, velocities) is not saved, so the cut episode cannot be continued.
  A signal that lands on the step that ends an episode loses nothing.
- Resuming with another torch thread count (`threads`, or a machine with another number of
  cores when it is null) or on another device: floating-point reductions may be ordered
  differently, so the weights agree only to rounding. On CUDA, bit-identity is not promised
  (and not tested): some kernels are not deterministic from one process to the next.
- W&B, online: the rows between the checkpoint and a kill were already sent; W&B keeps those
  and ignores re-logged rows for steps below the run's current step (same values, except
  perf/sps). Offline, each process writes its own offline-run directory with the same run
  id, so `wandb sync` sends them all to that one run.
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
from sac_cli.evaluation import (
    VIDEO_DIR,
    check_video_support,
    evaluate,
    prepare_offscreen_rendering,
    record_episodes,
)
from sac_cli.logger import (
    METRICS_FILE,
    MetricAccumulator,
    Progress,
    RunLogger,
    truncate_metrics,
)
from sac_cli.replay import ReplayBuffer
from sac_cli.seeding import eval_seeds, restore_rng_state, rng_state, seed_everything

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb-run-id"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
# Top-level config keys that a resumed run may change: they steer bookkeeping (length,
# hardware, logging, evaluation, checkpoint cadence), not what is learned from the data.
RESUME_MAY_CHANGE = frozenset(
    {"total_steps", "device", "threads", "compile", "eval", "checkpoint", "logger"}
)


class Stopped(BaseException):
    """Training stopped by a signal after writing a checkpoint. Not an Exception: it is no
    failure of the job, and it passes Hydra's job runner to the entry point untouched."""

    def __init__(self, signum: int, step: int, path: Path) -> None:
        self.signum = signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint "
            f"saved to {path}; run the same command in the same run directory to resume"
        )


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resumable(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """A run resumes only with the settings it started with (RESUME_MAY_CHANGE aside)."""
    old, new = _flatten(saved), _flatten(current)
    missing = object()
    changed = [
        key
        for key in sorted(old.keys() | new.keys())
        if key.split(".")[0] not in RESUME_MAY_CHANGE
        and old.get(key, missing) != new.get(key, missing)
    ]
    if changed:
        shown = ", ".join(f"{key}={old.get(key)} (now {new.get(key)})" for key in changed[:3])
        raise UserError(
            f"{path} belongs to a run with {shown}: resume with the original settings, or "
            "start a new run in another directory (hydra.run.dir=...)"
        )


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        device: torch.device,
        config_dict: dict[str, Any],
        parallel_branches: bool | None = None,
    ) -> None:
        """parallel_branches: see build_agent (None: its default for this process)."""
        self.cfg = cfg
        self.run_dir = run_dir
        self.config_dict = config_dict
        self.video = cfg.eval.video and cfg.eval.episodes > 0
        if self.video:
            prepare_offscreen_rendering()  # before mujoco is imported
        self.env = make_env(cfg.env.id)
        self.eval_env = make_env(cfg.env.id)
        if self.video:
            check_video_support(cfg.env.id)
        self.obs_dim, self.act_dim = env_dims(self.env)
        # Seed before building the networks: their initial weights come from torch's generator.
        self.first_obs = seed_everything(cfg.seed, self.env)
        self.agent = build_agent(cfg, self.obs_dim, self.act_dim, device, parallel_branches)
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
        self.logger: RunLogger | None = None
        self.stop_signal: int | None = None
        self.checkpoint_dir = run_dir / ckpt.CHECKPOINT_DIR
        # The step whose replay buffer file this process has written or loaded.
        self.buffer_file_step: int | None = None

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> float:
        """Train to cfg.total_steps; return the last evaluation's mean return."""
        ckpt.check_writable(self.checkpoint_dir)
        obs = self._start()
        if self.step >= self.cfg.total_steps:
            self._finish_done_run()
            return self.last_eval_return
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
        if self.wandb_run_id is not None and self.step == 0:
            # Killed before its first checkpoint, the run starts over, in the same W&B run.
            ckpt.atomic_write_text(self.wandb_run_id, self.checkpoint_dir / WANDB_ID_FILE)
        progress = Progress(self.cfg.total_steps, self.step)
        exit_code, preempted = 1, False
        try:
            with self._stop_on_signals():
                self._loop(obs, progress)
            self._save(ckpt.LAST)
            self._save(ckpt.FINAL)
            exit_code = 0
        except Stopped:
            preempted = True
            raise
        finally:
            progress.close()
            self.logger.close(exit_code, preempted=preempted)
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
            # Every row of this step is logged before a checkpoint: a resume keeps them all.
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
        seeds = eval_seeds(self.cfg.seed, self.step, self.cfg.eval.episodes)
        if self.video:
            # The first episode on a rendering copy of the environment, the others as usual:
            # the same returns as without video (the copy is reset with the same seed).
            filmed, paths = record_episodes(
                self.agent,
                self.cfg.env.id,
                seeds[:1],
                self.run_dir / VIDEO_DIR,
                f"eval-step-{self.step}",
            )
            result = filmed + evaluate(self.agent, self.eval_env, seeds[1:])
            self.logger.log_video(self.step, paths[0])
        else:
            result = evaluate(self.agent, self.eval_env, seeds)
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
        if self.logger is not None:
            # The rows up to this step reach the disk before the checkpoint that counts on them.
            self.logger.sync()
        state = self._state()
        if with_buffer:
            # A buffer file per step, referenced by the checkpoint: a kill between the two
            # writes leaves the previous checkpoint and its own buffer file intact. Written
            # once per step (last.pt and final.pt share it), and always by this process: a
            # file of the same name left by a killed attempt may hold another history.
            buffer_name = f"buffer-{self.step}.pt"
            if self.buffer_file_step != self.step:
                ckpt.atomic_save(self.buffer.state_dict(), self.checkpoint_dir / buffer_name)
                self.buffer_file_step = self.step
            state["buffer_file"] = buffer_name
        path = self.checkpoint_dir / name
        ckpt.atomic_save(state, path)
        if name == ckpt.LAST:
            self.last_checkpoint_step = self.step
        if with_buffer:
            ckpt.remove_stale_files(self.checkpoint_dir, keep=[state["buffer_file"]])
        return path

    def _start(self):
        """A fresh start keeps the seeded first observation; an existing last.pt in the run
        directory resumes."""
        last = self.checkpoint_dir / ckpt.LAST
        if not last.exists():
            # Whatever an attempt killed before its first checkpoint left is redone from the
            # start: its rows go (they come again, identical), its W&B run is continued.
            ckpt.remove_stale_files(self.checkpoint_dir, keep=[])
            truncate_metrics(self.run_dir / METRICS_FILE, 0)
            id_file = self.checkpoint_dir / WANDB_ID_FILE
            if id_file.is_file():
                self.wandb_run_id = id_file.read_text().strip() or None
            return self.first_obs
        state = ckpt.load(last, map_location=self.buffer.device)
        self._restore(state, last)
        ckpt.remove_stale_files(self.checkpoint_dir, keep=[state["buffer_file"]])
        truncate_metrics(self.run_dir / METRICS_FILE, self.step)
        log.info("resuming from %s at step %d", last, self.step)
        obs, _ = self.env.reset()
        return obs

    def _finish_done_run(self) -> None:
        """Started again after the end (a requeue, a repeated sweep): only make sure that
        final.pt exists (a kill may have fallen between last.pt and final.pt)."""
        if not (self.checkpoint_dir / ckpt.FINAL).exists():
            self._save(ckpt.FINAL)
        log.info("%s already trained %d steps: nothing to do", self.run_dir, self.step)
        self.env.close()
        self.eval_env.close()

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        check_resumable(state["config"], self.config_dict, path)
        if (state["obs_dim"], state["act_dim"]) != (self.obs_dim, self.act_dim):
            raise UserError(
                f"{path} was trained on {state['env_id']} (obs {state['obs_dim']}, "
                f"action {state['act_dim']}), which does not fit {self.cfg.env.id}: "
                "use a new run directory"
            )
        missing = [
            key
            for key in ("buffer_file", "optimizers", "rng", "metrics", "num_updates", "episodes")
            if key not in state
        ]
        if missing:
            raise UserError(f"{path} cannot resume a run (no {missing[0]!r}): is it best.pt?")
        try:
            self.agent.load_state_dict(state["agent"])
            for name, optimizer in self.agent.optimizers().items():
                optimizer.load_state_dict(state["optimizers"][name])
        except (RuntimeError, KeyError, ValueError) as error:
            raise UserError(
                f"{path} does not match this configuration ({_first_detail(error)}): "
                "resume with the original overrides or use a new run directory"
            ) from None
        buffer_path = self.checkpoint_dir / state["buffer_file"]
        try:
            self.buffer.load_state_dict(ckpt.load(buffer_path, self.buffer.device, kind=None))
        except (ValueError, KeyError) as error:
            raise UserError(
                f"{buffer_path}: {error}: resume with the original agent.buffer_size"
            ) from None
        self.buffer_file_step = state["step"]
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
        the current step (signal handlers can only be set in the main thread). A second
        Ctrl-C does not wait: KeyboardInterrupt (the last checkpoint stays intact)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self._request_stop) for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def request_stop(self, signum: int) -> None:
        """Stop at the end of the current step with a checkpoint (also submitit's preemption)."""
        self.stop_signal = signum

    def _request_stop(self, signum: int, frame) -> None:
        if signum == signal.SIGINT and self.stop_signal is not None:
            raise KeyboardInterrupt
        self.stop_signal = signum


def _first_detail(error: BaseException) -> str:
    """The informative line of a load_state_dict error (its first line is only a header)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    informative = ("size mismatch", "Missing", "Unexpected")
    detail = next((line for line in lines if line.startswith(informative)), None)
    return (detail or (lines[0] if lines else type(error).__name__))[:200]
