"""A run directory's checkpoints: what a checkpoint holds, writing one, and resuming from one.

A checkpoint is the agent, the optimizers, the metrics not yet logged, every generator and
the run's counters (`RunState`); its replay buffer is a file of its own per step
(`buffer-<step>.pt`), referenced by the checkpoint, so that a kill between the two writes
leaves the previous checkpoint and its own buffer file intact. See loop.py for when
checkpoints are taken and what a resumed run continues exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sac_cli.errors import UserError
from sac_cli.files import atomic_write_text
from sac_cli.seeding import restore_rng_state, rng_state
from sac_cli.training import checkpoint as ckpt
from sac_cli.training.logger import METRICS_FILE, MetricAccumulator, truncate_metrics
from sac_cli.training.run_dir import check_resumable

if TYPE_CHECKING:  # builders.py imports this module
    from sac_cli.training.builders import Parts

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb-run-id"
# What a checkpoint that can resume a run holds beyond the agent (best.pt has none of them).
RESUME_KEYS = ("buffer_file", "optimizers", "rng", "metrics", "num_updates", "episodes")


@dataclass
class RunState:
    """The run's counters, saved in every checkpoint."""

    step: int = 0
    episodes: int = 0
    last_checkpoint_step: int = 0
    best_return: float = -math.inf
    best_step: int | None = None
    last_eval_return: float = math.nan
    wandb_run_id: str | None = None

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> RunState:
        # best_step is absent from checkpoints of sac-cli <= 0.1.
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})


def checkpoint_due(run: RunState, every: int, episode_done: bool) -> bool:
    """At an episode end `every` steps after the last checkpoint; within a long episode, at
    most `every` steps later than that."""
    since = run.step - run.last_checkpoint_step
    return since >= every if episode_done else since >= 2 * every


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


class Checkpoints:
    """Saves the parts of a run to its checkpoints/ folder and restores them from it."""

    def __init__(
        self,
        run_dir: Path,
        parts: Parts,
        metrics: MetricAccumulator,
        config_dict: dict[str, Any],
        env_id: str,
    ) -> None:
        self.run_dir, self.folder = run_dir, run_dir / ckpt.CHECKPOINT_DIR
        self.parts, self.metrics = parts, metrics
        self.config_dict, self.env_id = config_dict, env_id
        # The step whose replay buffer file this process has written or loaded.
        self.buffer_file_step: int | None = None

    # --- writing ----------------------------------------------------------------------------

    def _contents(self, run: RunState) -> dict[str, Any]:
        parts = self.parts
        return {
            "format": ckpt.FORMAT_VERSION,
            "config": self.config_dict,
            "env_id": self.env_id,
            "obs_dim": parts.obs_dim,
            "act_dim": parts.act_dim,
            **asdict(run),
            "last_checkpoint_step": run.step,
            "agent": parts.agent.state_dict(),
            "num_updates": parts.engine.num_updates,
            "optimizers": parts.engine.state_dict(),
            "metrics": self.metrics.state_dict(),
            "rng": rng_state(parts.env),
        }

    def check_finite_weights(self, run: RunState) -> None:
        """One host sync per checkpoint: never save a diverged agent over a good one."""
        tensors = [t for t in self.parts.agent.state_dict().values() if t.is_floating_point()]
        finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
        if not bool(finite):
            raise Diverged(run.step, "the weights are not finite", run.last_checkpoint_step)

    def save(self, name: str, run: RunState, with_buffer: bool = True) -> Path:
        """Write checkpoints/<name> (with its buffer file unless with_buffer is False)."""
        self.check_finite_weights(run)
        state = self._contents(run)
        if with_buffer:
            # Written once per step (last.pt and final.pt share it), and always by this
            # process: a file of the same name left by a killed attempt may hold another
            # history.
            buffer_name = f"buffer-{run.step}.pt"
            new_buffer_file = self.buffer_file_step != run.step
            if new_buffer_file:
                ckpt.atomic_save(self.parts.buffer.state_dict(), self.folder / buffer_name)
                self.buffer_file_step = run.step
            state["buffer_file"] = buffer_name
        path = self.folder / name
        try:
            ckpt.atomic_save(state, path)
        except UserError:
            if with_buffer and new_buffer_file:  # no checkpoint refers to it: leave none
                (self.folder / buffer_name).unlink(missing_ok=True)
                self.buffer_file_step = None
            raise
        if name == ckpt.LAST:
            run.last_checkpoint_step = run.step
        if with_buffer:
            ckpt.remove_stale_files(self.folder, keep=[buffer_name])
        return path

    def remember_wandb_run(self, run: RunState) -> None:
        """A run killed before its first checkpoint starts over, in the same W&B run."""
        if run.wandb_run_id is not None and run.step == 0:
            atomic_write_text(run.wandb_run_id, self.folder / WANDB_ID_FILE)

    def tidy(self, step: int) -> None:
        """Drop what a killed attempt left after the checkpoint resumed from: stale files and
        metrics rows (they come again, identical). Before the first checkpoint, that is all
        of it; its W&B run is continued."""
        keep = [] if self.buffer_file_step is None else [f"buffer-{self.buffer_file_step}.pt"]
        ckpt.remove_stale_files(self.folder, keep=keep)
        truncate_metrics(self.run_dir / METRICS_FILE, step)

    # --- resuming ---------------------------------------------------------------------------

    def resume(self) -> RunState | None:
        """The run's state from last.pt, with every part restored in memory (nothing written);
        None when the run is new (its W&B run id kept, if a killed attempt left one)."""
        ckpt.check_writable(self.folder)
        last = self.folder / ckpt.LAST
        if not last.exists():
            return None
        state = ckpt.load(last, map_location=self.parts.buffer.device)
        self._restore(state, last)
        log.info("resuming from %s at step %d", last, state["step"])
        return RunState.from_checkpoint(state)

    def wandb_run_id_of_new_run(self) -> str | None:
        id_file = self.folder / WANDB_ID_FILE
        return (id_file.read_text().strip() or None) if id_file.is_file() else None

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        parts = self.parts
        check_resumable(state["config"], self.config_dict, path)
        if (state["obs_dim"], state["act_dim"]) != (parts.obs_dim, parts.act_dim):
            raise UserError(
                f"{path} was trained on {state['env_id']} (obs {state['obs_dim']}, "
                f"action {state['act_dim']}), which does not fit {self.env_id}: "
                "use a new run directory"
            )
        missing = [key for key in RESUME_KEYS if key not in state]
        if missing:
            raise UserError(f"{path} cannot resume a run (no {missing[0]!r}): is it best.pt?")
        try:
            parts.agent.load_state_dict(state["agent"])
            parts.engine.load_state_dict(state["optimizers"])
        except (RuntimeError, KeyError, ValueError, TypeError) as error:
            raise UserError(
                f"{path} does not match this configuration ({_first_detail(error)}): "
                "resume with the original overrides or use a new run directory"
            ) from None
        buffer_path = self.folder / state["buffer_file"]
        try:
            parts.buffer.load_state_dict(ckpt.load(buffer_path, parts.buffer.device, kind=None))
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"{buffer_path} cannot be resumed from: {error}") from None
        self.buffer_file_step = state["step"]
        parts.engine.num_updates = state["num_updates"]
        self.metrics.load_state_dict(state["metrics"])
        restore_rng_state(state["rng"], parts.env)


def _first_detail(error: BaseException) -> str:
    """The informative line of a load_state_dict error (its first line is only a header)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    informative = ("size mismatch", "Missing", "Unexpected")
    detail = next((line for line in lines if line.startswith(informative)), None)
    return (detail or (lines[0] if lines else type(error).__name__))[:200]
