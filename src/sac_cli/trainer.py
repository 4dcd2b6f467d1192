"""The training loop: act, store, update, evaluate, checkpoint, log; resumable.

Checkpoints are taken at episode boundaries, before the environment resets: a resumed run
restores every generator (python, numpy, torch, the replay buffer's, the environment's and
its action space's) and performs that same reset, so it continues exactly as the
uninterrupted run would have. On CPU, a run killed at any instant (even SIGKILL) and started
again with the same command and run directory ends with bit-identical weights and the same
metrics.jsonl rows (tests/test_resume.py). Rows logged after the checkpoint are dropped on
resume and logged again; a run killed before its first checkpoint starts over (its rows are
dropped, its W&B run id, kept in checkpoints/wandb-run-id, is continued).

Checkpoints come at the first episode end `checkpoint.every` steps after the last one; when
an episode is longer than that (an environment without a time limit), in mid-episode at the
latest `checkpoint.every` steps later still. A checkpoint taken mid-episode (that one, a stop
signal, the end of `total_steps`) records the open episode's last transition as a truncation
with its true next observation, so that a resumed or extended run, which starts a new
episode, never bootstraps from the reset observation. A run that goes on after such a
checkpoint loses nothing: a truncation's stored next observation is the one that follows.

A non-finite metric in a logged row (a loss, an episode return, an evaluation) stops training
with one line naming the step and the metric (Diverged), and no checkpoint is written with
non-finite weights: last.pt keeps the last finite state.

Where a resumed run is not bit-identical to an uninterrupted one:
- A checkpoint taken mid-episode (see above), resumed: a new episode starts there.
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

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from sac_cli import checkpoint as ckpt
from sac_cli.builders import Parts
from sac_cli.config import TrainConfig
from sac_cli.errors import UserError
from sac_cli.evaluation import (
    VIDEO_DIR,
    evaluate,
    record_episodes,
)
from sac_cli.files import atomic_write_text
from sac_cli.logger import METRICS_FILE, MetricAccumulator, RunLogger, truncate_metrics
from sac_cli.progress import Progress
from sac_cli.run_dir import check_resumable
from sac_cli.seeding import eval_seeds, restore_rng_state, rng_state
from sac_cli.signals import STOP, Stopped

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb-run-id"


class Diverged(UserError):
    """A metric or a weight became NaN or infinite: training stops, last.pt stays finite."""

    def __init__(self, step: int, what: str, last_checkpoint: int) -> None:
        kept = (
            f"last.pt keeps step {last_checkpoint}, the last finite checkpoint"
            if last_checkpoint
            else "no checkpoint was written"
        )
        super().__init__(
            f"training diverged at step {step}: {what}; {kept}. Check the environment's "
            "rewards and observations, or lower the learning rates (optimizer.critic_lr, "
            "optimizer.actor_lr)"
        )


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        parts: Parts,
        config_dict: dict[str, Any],
    ) -> None:
        """parts: build_parts(cfg, device); config_dict: the resolved config, as saved in
        checkpoints and given to W&B."""
        self.cfg = cfg
        self.run_dir = run_dir
        self.config_dict = config_dict
        self.video = cfg.eval.video and cfg.eval.episodes > 0
        self.env, self.eval_env = parts.env, parts.eval_env
        self.agent, self.engine, self.buffer = parts.agent, parts.engine, parts.buffer
        self.first_obs, self.obs_dim, self.act_dim = parts.first_obs, parts.obs_dim, parts.act_dim
        self.metrics = MetricAccumulator()
        self.step = 0
        self.episodes = 0
        self.last_checkpoint_step = 0
        self.best_return = -math.inf
        self.best_step: int | None = None
        self.wall_time = 0.0  # seconds this process has trained
        self.steps_trained = 0  # by this process
        self.last_eval_return = math.nan
        self.wandb_run_id: str | None = None
        self.logger: RunLogger | None = None
        self.checkpoint_dir = run_dir / ckpt.CHECKPOINT_DIR
        # The step whose replay buffer file this process has written or loaded.
        self.buffer_file_step: int | None = None
        # The observation the environment is in (None before start()), and whether the
        # newest stored transition leaves an episode open.
        self.obs = None
        self.mid_episode = False
        # Progress's label and bar: a job of a sweep sets them (see sac_cli.train).
        self.progress_style: tuple[str, bool] = ("", True)

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> float:
        """Train to cfg.total_steps; return the last evaluation's mean return."""
        if self.obs is None:
            self.start()
        STOP.raise_if_requested(self.run_dir)
        self._tidy_run_dir()
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
            atomic_write_text(self.wandb_run_id, self.checkpoint_dir / WANDB_ID_FILE)
        progress = Progress(
            self.cfg.total_steps, self.step, self.cfg.learning_starts, *self.progress_style
        )
        exit_code, preempted = 1, False
        started, first_step = time.monotonic(), self.step
        try:
            with STOP.installed():
                self._loop(progress)
            self._save(ckpt.LAST)
            self._save(ckpt.FINAL)
            exit_code = 0
        except Stopped:
            preempted = True
            raise
        finally:
            self.wall_time, self.steps_trained = time.monotonic() - started, self.step - first_step
            progress.close()
            self.logger.close(exit_code, preempted=preempted)
            self.env.close()
            self.eval_env.close()
        return self.last_eval_return

    def _loop(self, progress: Progress) -> None:
        cfg = self.cfg
        window_start, window_step = time.perf_counter(), self.step
        last_return = math.nan
        obs = self.obs
        while self.step < cfg.total_steps:
            if self.step < cfg.learning_starts:
                action = self.env.action_space.sample()
            else:
                action = self.agent.act(obs)
            next_obs, reward, terminated, truncated, info = self.env.step(action)
            self.buffer.add(obs, action, reward, next_obs, terminated, truncated)
            self.step += 1
            episode_done = terminated or truncated
            self.obs, self.mid_episode = next_obs, not episode_done
            if self.step >= cfg.learning_starts:
                for _ in range(self.engine.schedule.critic_steps):
                    self.metrics.add(self.engine.update(self.buffer.sample(cfg.agent.batch_size)))
            if episode_done:
                self.episodes += 1
                last_return = float(info["episode"]["r"])
                self._log(
                    {
                        "train/episode_return": last_return,
                        "train/episode_length": int(info["episode"]["l"]),
                    }
                )
                progress.update(self.step, train_return=last_return)
            else:
                progress.update(self.step)
            if self.step % cfg.logger.every == 0:
                now = time.perf_counter()
                sps = (self.step - window_step) / (now - window_start)
                window_start, window_step = now, self.step
                self._log({**self.metrics.pop_means(), "perf/sps": sps})
            if cfg.eval.episodes > 0 and (
                self.step % cfg.eval.every == 0 or self.step == cfg.total_steps
            ):
                self._evaluate()
                progress.line(
                    self.step, eval_return=self.last_eval_return, train_return=last_return
                )
            # Every row of this step is logged before a checkpoint: a resume keeps them all.
            if self._checkpoint_due(episode_done):
                self._save(ckpt.LAST)
            if STOP.signum is not None:
                signum, path = STOP.signum, self._save(ckpt.LAST)
                STOP.signum = None  # handled: a later run in this process starts afresh
                raise Stopped(signum, self.step, path, self.run_dir)
            if episode_done:
                self.obs, _ = self.env.reset()
            obs = self.obs

    def _checkpoint_due(self, episode_done: bool) -> bool:
        """At an episode end `checkpoint.every` steps after the last checkpoint; within a long
        episode, at most `checkpoint.every` steps later than that."""
        since = self.step - self.last_checkpoint_step
        every = self.cfg.checkpoint.every
        return since >= every if episode_done else since >= 2 * every

    def _log(self, row: dict[str, float]) -> None:
        """Log one row at this step; a non-finite value in it stops training (Diverged)."""
        self.logger.log(self.step, row)
        bad = next((key for key, value in row.items() if not math.isfinite(value)), None)
        if bad is not None:
            raise Diverged(self.step, f"{bad} is {row[bad]}", self.last_checkpoint_step)

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
                step_limit=self.cfg.eval.max_episode_steps,
            )
            result = filmed + evaluate(self.agent, self.eval_env, seeds[1:])
            self.logger.log_video(self.step, paths[0])
        else:
            result = evaluate(self.agent, self.eval_env, seeds)
        self.last_eval_return = result.return_mean
        self._log({"eval/return_mean": result.return_mean, "eval/return_std": result.return_std})
        if result.return_mean > self.best_return:
            self.best_return, self.best_step = result.return_mean, self.step
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
            "best_step": self.best_step,
            "last_eval_return": self.last_eval_return,
            "wandb_run_id": self.wandb_run_id,
            "agent": self.agent.state_dict(),
            "num_updates": self.engine.num_updates,
            "optimizers": self.engine.state_dict(),
            "metrics": self.metrics.state_dict(),
            "rng": rng_state(self.env),
        }

    def _check_finite_weights(self) -> None:
        """One host sync per checkpoint: never save a diverged agent over a good one."""
        tensors = [t for t in self.agent.state_dict().values() if t.is_floating_point()]
        finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
        if not bool(finite):
            raise Diverged(self.step, "the weights are not finite", self.last_checkpoint_step)

    def _save(self, name: str, with_buffer: bool = True) -> Path:
        self._check_finite_weights()
        if self.logger is not None:
            # The rows up to this step reach the disk before the checkpoint that counts on them.
            self.logger.sync()
        if with_buffer and self.mid_episode:
            # A resume starts a new episode here: the open one ends as a truncation.
            self.buffer.truncate_last(self.obs)
        state = self._state()
        if with_buffer:
            # A buffer file per step, referenced by the checkpoint: a kill between the two
            # writes leaves the previous checkpoint and its own buffer file intact. Written
            # once per step (last.pt and final.pt share it), and always by this process: a
            # file of the same name left by a killed attempt may hold another history.
            buffer_name = f"buffer-{self.step}.pt"
            new_buffer_file = self.buffer_file_step != self.step
            if new_buffer_file:
                ckpt.atomic_save(self.buffer.state_dict(), self.checkpoint_dir / buffer_name)
                self.buffer_file_step = self.step
            state["buffer_file"] = buffer_name
        path = self.checkpoint_dir / name
        try:
            ckpt.atomic_save(state, path)
        except UserError:
            if with_buffer and new_buffer_file:  # no checkpoint refers to it: leave none
                (self.checkpoint_dir / buffer_name).unlink(missing_ok=True)
                self.buffer_file_step = None
            raise
        if name == ckpt.LAST:
            self.last_checkpoint_step = self.step
        if with_buffer:
            ckpt.remove_stale_files(self.checkpoint_dir, keep=[state["buffer_file"]])
        return path

    def start(self) -> None:
        """Resume from the run directory's last.pt, if it has one (checked and loaded into
        memory, nothing written), or keep the seeded first observation of a fresh start."""
        ckpt.check_writable(self.checkpoint_dir)
        last = self.checkpoint_dir / ckpt.LAST
        if not last.exists():
            id_file = self.checkpoint_dir / WANDB_ID_FILE
            if id_file.is_file():
                self.wandb_run_id = id_file.read_text().strip() or None
            self.obs = self.first_obs
            return
        state = ckpt.load(last, map_location=self.buffer.device)
        self._restore(state, last)
        log.info("resuming from %s at step %d", last, self.step)
        self.obs, _ = self.env.reset()

    def _tidy_run_dir(self) -> None:
        """Drop what a killed attempt left after the checkpoint resumed from: stale files and
        metrics rows (they come again, identical). Before the first checkpoint, that is all
        of it; its W&B run is continued."""
        keep = [] if self.buffer_file_step is None else [f"buffer-{self.buffer_file_step}.pt"]
        ckpt.remove_stale_files(self.checkpoint_dir, keep=keep)
        truncate_metrics(self.run_dir / METRICS_FILE, self.step)

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
            self.engine.load_state_dict(state["optimizers"])
        except (RuntimeError, KeyError, ValueError, TypeError) as error:
            raise UserError(
                f"{path} does not match this configuration ({_first_detail(error)}): "
                "resume with the original overrides or use a new run directory"
            ) from None
        buffer_path = self.checkpoint_dir / state["buffer_file"]
        try:
            self.buffer.load_state_dict(ckpt.load(buffer_path, self.buffer.device, kind=None))
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"{buffer_path} cannot be resumed from: {error}") from None
        self.buffer_file_step = state["step"]
        self.engine.num_updates = state["num_updates"]
        self.metrics.load_state_dict(state["metrics"])
        self.step = state["step"]
        self.episodes = state["episodes"]
        self.last_checkpoint_step = state["last_checkpoint_step"]
        self.best_return = state["best_return"]
        self.best_step = state.get("best_step")  # absent from checkpoints of sac-cli <= 0.1
        self.last_eval_return = state["last_eval_return"]
        self.wandb_run_id = state["wandb_run_id"]
        restore_rng_state(state["rng"], self.env)


def _first_detail(error: BaseException) -> str:
    """The informative line of a load_state_dict error (its first line is only a header)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    informative = ("size mismatch", "Missing", "Unexpected")
    detail = next((line for line in lines if line.startswith(informative)), None)
    return (detail or (lines[0] if lines else type(error).__name__))[:200]
