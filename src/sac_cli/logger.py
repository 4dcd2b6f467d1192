"""Where numbers go: a W&B run (offline by default), metrics.jsonl, and the terminal."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop rows logged after `last_step` (a resumed run logs them again) and a torn last line."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step", 0) <= last_step:
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)


class MetricAccumulator:
    """Sums update metrics as device tensors; reading the mean is the only host sync."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            if key in self.sums:
                self.sums[key] += value
            else:
                self.sums[key] = value.clone()
        self.count += 1

    def pop_means(self) -> dict[str, float]:
        if self.count == 0:
            return {}
        keys = list(self.sums)
        values = (torch.stack([self.sums[k] for k in keys]) / self.count).tolist()
        self.sums, self.count = {}, 0
        return dict(zip(keys, values, strict=True))


class RunLogger:
    def __init__(
        self,
        run_dir: Path,
        config: dict[str, Any],
        mode: str,
        project: str,
        group: str | None,
        name: str | None,
        run_id: str | None = None,
    ) -> None:
        self.path = run_dir / METRICS_FILE
        self.file = self.path.open("a", buffering=1)
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
        self.file.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=step)

    def sync(self) -> None:
        """Flush metrics.jsonl to the disk (before a checkpoint that counts on its rows)."""
        self.file.flush()
        os.fsync(self.file.fileno())

    def log_video(self, step: int, path: Path) -> None:
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({"eval/video": wandb.Video(str(path), format="mp4")}, step=step)

    def close(self, exit_code: int = 0, preempted: bool = False) -> None:
        """preempted: stopped by a signal to be resumed; W&B shows the run as preempted, not
        failed."""
        self.file.close()
        if self.wandb_run is not None:
            if preempted:
                self.wandb_run.mark_preempting()
            self.wandb_run.finish(exit_code=exit_code)
            self.wandb_run = None


class Progress:
    """A live bar on a terminal; plain lines (at each evaluation) when output is redirected."""

    def __init__(self, total: int, initial: int) -> None:
        self.interactive = sys.stderr.isatty()
        self.total = total
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit="step",
            dynamic_ncols=True,
            smoothing=0.05,
            disable=not self.interactive,
        )
        self.start_time = time.monotonic()
        self.start_step = initial

    def update(self, step: int, **postfix: float) -> None:
        if self.interactive:
            self.bar.update(step - self.bar.n)
            if postfix:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def line(self, step: int, **values: float) -> None:
        if self.interactive:
            return
        elapsed = time.monotonic() - self.start_time
        rate = (step - self.start_step) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        parts = [f"step {step}/{self.total}", f"{rate:.0f} steps/s", f"ETA {_duration(eta)}"]
        parts += [f"{k} {v:.4g}" for k, v in values.items()]
        print(" | ".join(parts), file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
