"""Where numbers go: metrics.jsonl, a W&B run (offline by default) and, when asked, TensorBoard
event files (the terminal: progress.py)."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from sac_cli.errors import UserError
from sac_cli.files import atomic_write_text
from sac_cli.reporting import metrics
from sac_cli.reporting.metrics import METRICS_FILE
from sac_cli.training.tensorboard import TensorBoardLog

log = logging.getLogger(__name__)



def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop rows logged after `last_step` (a resumed run logs them again) and a torn last line."""
    if not path.exists():
        return
    text = path.read_text(errors="replace")  # read once: the rows kept and the lines they were
    kept = [line for _, line, row in metrics.parse(text, path) if row["step"] <= last_step]
    if len(kept) != len(text.splitlines()):
        atomic_write_text("".join(f"{line}\n" for line in kept), path)


def json_row(step: int, metrics: dict[str, float], wall_time: float) -> str:
    """One metrics.jsonl row as strict JSON: a NaN or infinite value is written as null;
    `time` is the wall-clock time of the row (Unix seconds)."""
    row = {key: value if math.isfinite(value) else None for key, value in metrics.items()}
    return json.dumps({"step": step, **row, "time": round(wall_time, 3)}, allow_nan=False)


class MetricAccumulator:
    """Sums update metrics as device tensors; reading the mean is the only host sync. Each
    metric is averaged over the updates that reported it (a delayed policy reports its
    losses on some updates only); `count` is the number of updates."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.count = 0

    def add(self, metrics: dict[str, torch.Tensor], new_update: bool = True) -> None:
        """new_update=False: the metrics of an update already counted, which came late (the
        update engine's finish(), when its critic step overlapped the next environment step)."""
        seen = [key for key in metrics if key in self.sums]
        if seen:  # one call for all of them: each tensor op costs more than its addition here
            torch._foreach_add_([self.sums[k] for k in seen], [metrics[k] for k in seen])
        for key, value in metrics.items():
            if key not in self.sums:
                self.sums[key] = value.clone()
            self.counts[key] = self.counts.get(key, 0) + 1
        self.count += new_update

    def pop_means(self) -> dict[str, float]:
        if self.count == 0:
            return {}
        keys = list(self.sums)
        sums = torch.stack([self.sums[k] for k in keys])
        counts = torch.tensor([self.counts[k] for k in keys], dtype=sums.dtype, device=sums.device)
        values = (sums / counts).tolist()
        self.sums, self.counts, self.count = {}, {}, 0
        return dict(zip(keys, values, strict=True))

    def state_dict(self) -> dict:
        return {"sums": self.sums, "counts": self.counts, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.count = state["sums"], state["count"]
        # Checkpoints of sac-cli <= 0.1 hold one count for every metric.
        self.counts = state.get("counts") or dict.fromkeys(self.sums, self.count)


class RunLogger:
    def __init__(
        self,
        run_dir: Path,
        config: dict[str, Any],
        mode: str,
        project: str,
        group: str | None,
        name: str | None,
        tensorboard: bool = False,
        run_id: str | None = None,
        step: int = 0,
    ) -> None:
        """run_id: the W&B run to continue; step: the step the run resumes from."""
        self.path = run_dir / METRICS_FILE
        self.file = self.path.open("a", buffering=1)
        self.tensorboard = TensorBoardLog(run_dir, config, step) if tensorboard else None
        self.wandb_run = None
        if mode != "disabled":
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self.wandb_run = wandb.init(
                project=project,
                group=group,
                name=name,
                config=config,
                dir=str(run_dir),
                mode=mode,
                id=run_id,
                resume="allow" if run_id else None,
                settings=wandb.Settings(console="off"),
            )

    @property
    def run_id(self) -> str | None:
        return self.wandb_run.id if self.wandb_run is not None else None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        with self._writing():
            self.file.write(json_row(step, metrics, time.time()) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.log(step, metrics)
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=step)

    def sync(self) -> None:
        """Flush metrics.jsonl to the disk (before a checkpoint that counts on its rows)."""
        with self._writing():
            self.file.flush()
            os.fsync(self.file.fileno())
            if self.tensorboard is not None:
                self.tensorboard.flush()

    @contextlib.contextmanager
    def _writing(self):
        try:
            yield
        except OSError as error:
            hint = "; free some space there" if error.errno == errno.ENOSPC else ""
            raise UserError(f"cannot write {self.path}: {error.strerror or error}{hint}") from None

    def log_video(self, step: int, path: Path) -> None:
        if self.tensorboard is not None:
            self.tensorboard.log_video(step, path)
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({"eval/video": wandb.Video(str(path), format="mp4")}, step=step)

    def close(self, exit_code: int = 0, preempted: bool = False) -> None:
        """preempted: stopped by a signal to be resumed; W&B shows the run as preempted, not
        failed."""
        with contextlib.suppress(OSError):  # a full disk: the rows after the checkpoint
            self.file.close()  # are lost, and logged again on resume
        if self.tensorboard is not None:
            with contextlib.suppress(OSError):
                self.tensorboard.close()
        if self.wandb_run is not None:
            run, self.wandb_run = self.wandb_run, None
            try:
                if preempted:
                    run.mark_preempting()
                run.finish(exit_code=exit_code)
            except Exception as error:  # e.g. its service process ended by the same SIGTERM
                log.warning("W&B run %s was not closed cleanly (%s: %s); its offline files "
                            "stay as written", run.id, type(error).__name__, error)
