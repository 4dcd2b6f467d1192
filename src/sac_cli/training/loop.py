"""The training loop: act, store, update, evaluate, checkpoint, log; resumable (resume.py).

Checkpoints are taken at episode boundaries, before the environment resets: a resumed run
restores every generator (python, numpy, torch, the replay buffer's, the environment's and
its action space's) and performs that same reset, so it continues exactly as the
uninterrupted run would have. On CPU, a run killed at any instant (even SIGKILL) and started
again with the same command and run directory ends with bit-identical weights and the same
metrics.jsonl rows, eager or compiled (tests/cli/test_resume.py). Rows logged after the
checkpoint are dropped on resume and logged again; a run killed before its first checkpoint
starts over (its rows are dropped, its W&B run id, kept in checkpoints/wandb-run-id, is
continued).

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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sac_cli.config import TrainConfig
from sac_cli.training import checkpoint as ckpt
from sac_cli.training.evaluation import VIDEO_DIR, evaluate_at_step
from sac_cli.training.logger import MetricAccumulator, RunLogger
from sac_cli.training.progress import Progress
from sac_cli.training.resume import Checkpoints, Diverged, RunState, checkpoint_due
from sac_cli.training.signals import STOP, Stopped

if TYPE_CHECKING:  # builders.py imports this module
    from sac_cli.training.builders import Parts

log = logging.getLogger(__name__)

# Opens the run's logger, given the W&B run id to continue (None: a new W&B run) and the step
# it resumes from. The trainer opens it once the run directory is tidy: both come from the
# checkpoint.
OpenLogger = Callable[[str | None, int], RunLogger]


class Trainer:
    """Trains the given parts; `checkpoints` saves and resumes them."""

    def __init__(
        self,
        cfg: TrainConfig,
        parts: Parts,
        checkpoints: Checkpoints,
        open_logger: OpenLogger,
        progress_style: tuple[str, bool] = ("", True),
    ) -> None:
        """progress_style: the label of each line and whether to draw a bar (a job of a sweep
        that shares the terminal: its label, no bar)."""
        self.cfg = cfg
        self.env, self.eval_env = parts.env, parts.eval_env
        self.agent, self.engine, self.buffer = parts.agent, parts.engine, parts.buffer
        self.checkpoints, self.open_logger = checkpoints, open_logger
        self.metrics: MetricAccumulator = checkpoints.metrics
        self.progress_style = progress_style
        self.state = RunState()
        self.logger: RunLogger | None = None
        self.video = cfg.eval.video and cfg.eval.episodes > 0
        self.wall_time = 0.0  # seconds this process has trained
        self.steps_trained = 0  # by this process
        # The observation the environment is in, and whether the newest stored transition
        # leaves an episode open.
        self.obs = parts.first_obs
        self.mid_episode = False
        self.started = False

    @property
    def step(self) -> int:
        return self.state.step

    def start(self) -> None:
        """Resume from the run directory's last.pt, if it has one (checked and loaded into
        memory, nothing written), or keep the seeded first observation of a fresh start."""
        self.started = True
        resumed = self.checkpoints.resume()
        if resumed is None:
            self.state.wandb_run_id = self.checkpoints.wandb_run_id_of_new_run()
            return
        self.state = resumed
        self.new_episode()

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> float:
        """Train to cfg.total_steps; return the last evaluation's mean return."""
        if not self.started:
            self.start()
        STOP.raise_if_requested(self.checkpoints.run_dir)
        self.checkpoints.tidy(self.step)
        if self.step >= self.cfg.total_steps:
            self._finish_done_run()
            return self.state.last_eval_return
        self.logger = self.open_logger(self.state.wandb_run_id, self.step)
        self.state.wandb_run_id = self.logger.run_id
        self.checkpoints.remember_wandb_run(self.state)
        progress = Progress(
            self.cfg.total_steps, self.step, self.cfg.learning_starts, *self.progress_style
        )
        exit_code, preempted = 1, False
        started, first_step = time.monotonic(), self.step
        try:
            # The critic's step may run on while the next step acts (with branch threads):
            # the loop settles it before it logs, evaluates or saves (_settle).
            with STOP.installed(), self.engine.overlapping():
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
        return self.state.last_eval_return

    def collect(self) -> tuple[bool, dict[str, Any]]:
        """One environment step and the updates that follow it (the hot path, which sac-bench
        times): act (uniformly at random before learning starts), step, store, update.
        Returns whether the episode ended, and the step's info. The last update's critic step
        may still be running (call _settle before reading the agent)."""
        cfg, obs = self.cfg, self.obs
        self.agent.observe(obs)
        if self.step < cfg.learning_starts:
            action = self.env.action_space.sample()
        else:
            action = self.agent.act(obs)
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self.buffer.add(obs, action, reward, next_obs, terminated, truncated)
        self.state.step += 1
        episode_done = terminated or truncated
        self.obs, self.mid_episode = next_obs, not episode_done
        if self.step >= cfg.learning_starts:
            for _ in range(self.engine.schedule.critic_steps):
                self.metrics.add(self.engine.update(self.buffer.sample(cfg.agent.batch_size)))
        return episode_done, info

    def _loop(self, progress: Progress) -> None:
        cfg = self.cfg
        window_start, window_step = time.perf_counter(), self.step
        last_return = math.nan
        while self.step < cfg.total_steps:
            if self.engine.compiles_next and self.step + 1 >= cfg.learning_starts:
                episode_done, info = self._collect_compiling(progress)
            else:
                episode_done, info = self.collect()
            if episode_done:
                self.state.episodes += 1
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
                self._settle()
                self._log({**self.metrics.pop_means(), "perf/sps": sps})
            if cfg.eval.episodes > 0 and (
                self.step % cfg.eval.every == 0 or self.step == cfg.total_steps
            ):
                self._evaluate()
                progress.line(
                    self.step, eval_return=self.state.last_eval_return, train_return=last_return
                )
            # Every row of this step is logged before a checkpoint: a resume keeps them all.
            if checkpoint_due(self.state, self.cfg.checkpoint.every, episode_done):
                self._save(ckpt.LAST)
            if STOP.signum is not None:
                signum, path = STOP.signum, self._save(ckpt.LAST)
                STOP.signum = None  # handled: a later run in this process starts afresh
                raise Stopped(signum, self.step, path, self.checkpoints.run_dir)
            if episode_done:
                self.new_episode()

    def _collect_compiling(self, progress: Progress) -> tuple[bool, dict[str, Any]]:
        """collect(), whose update compiles: a line before, and one after with the time it
        took, or why it runs eager instead (compile=auto)."""
        progress.note("compiling the update with torch.compile (once per start; tens of seconds)")
        began = time.perf_counter()
        result = self.collect()
        failure = self.engine.compile_failure
        progress.note(
            f"torch.compile failed ({failure}): training with the eager update"
            if failure
            else f"compiled in {time.perf_counter() - began:.0f} s"
        )
        return result

    def new_episode(self) -> None:
        """Reset the environment after an episode's end (and its checkpoint, if one is due:
        a resumed run performs this same reset)."""
        self.obs, _ = self.env.reset()

    def _log(self, row: dict[str, float]) -> None:
        """Log one row at this step; a non-finite value in it stops training (Diverged)."""
        self.logger.log(self.step, row)
        bad = next((key for key, value in row.items() if not math.isfinite(value)), None)
        if bad is not None:
            raise Diverged(self.step, f"{bad} is {row[bad]}", self.state.last_checkpoint_step)

    def _settle(self) -> None:
        """The update in flight finished, its metrics counted."""
        self.metrics.add(self.engine.finish(), new_update=False)

    def _evaluate(self) -> None:
        self._settle()
        state = self.state
        videos = self.checkpoints.run_dir / VIDEO_DIR if self.video else None
        result, video = evaluate_at_step(self.agent, self.eval_env, self.cfg, self.step, videos)
        if video is not None:
            self.logger.log_video(self.step, video)
        state.last_eval_return = result.return_mean
        self._log({"eval/return_mean": result.return_mean, "eval/return_std": result.return_std})
        if result.return_mean > state.best_return:
            state.best_return, state.best_step = result.return_mean, self.step
            self._save(ckpt.BEST, with_buffer=False)

    def _save(self, name: str, with_buffer: bool = True) -> Path:
        self._settle()
        if self.logger is not None:
            # The rows up to this step reach the disk before the checkpoint that counts on them.
            self.logger.sync()
        if with_buffer and self.mid_episode:
            # A resume starts a new episode here: the open one ends as a truncation.
            self.buffer.truncate_last(self.obs)
        return self.checkpoints.save(name, self.state, with_buffer)

    def _finish_done_run(self) -> None:
        """Started again after the end (a requeue, a repeated sweep): only make sure that
        final.pt exists (a kill may have fallen between last.pt and final.pt)."""
        if not (self.checkpoints.folder / ckpt.FINAL).exists():
            self._save(ckpt.FINAL)
        log.info("%s already trained %d steps: nothing to do", self.checkpoints.run_dir, self.step)
        self.env.close()
        self.eval_env.close()
