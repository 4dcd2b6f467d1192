"""What sac-bench times: a variant's `updates(n)` and `steps(n)` (the learning phase), in
wall-clock and process CPU seconds; sac-cli's runner steps the Trainer's own loop."""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sac_cli.config import AgentConfig, EnvConfig, NetworkConfig, TrainConfig
from sac_cli.training.builders import build_parts, build_trainer
from sac_cli.training.update import branch_threads_by_default

UNUSED_RUN_DIR = Path(tempfile.gettempdir()) / "sac-bench-unused"


@dataclass
class Settings:
    env_id: str
    device: torch.device
    hidden: list[int]
    batch_size: int
    buffer_size: int
    learning_starts: int
    steps: int
    updates: int
    repeats: int
    warmup_steps: int
    warmup_updates: int
    seed: int


@dataclass
class Result:
    variant: str  # eager, compiled, or a peer: sb3, sbx
    name: str
    threads: int
    branches: int | None = None  # sac-cli's loss branches at once: 2 in two threads
    updates_per_s: list[float] = field(default_factory=list)
    steps_per_s: list[float] = field(default_factory=list)
    # The same per second of process CPU time.
    updates_per_cpu_s: list[float] = field(default_factory=list)
    steps_per_cpu_s: list[float] = field(default_factory=list)
    setup_s: float = math.nan  # building, random steps and warm-up (compiling, if any)

    def median(self, key: str) -> float:
        values = getattr(self, key)
        return statistics.median(values) if values else math.nan


class Runner:
    """One variant: `updates(n)` and `steps(n)` run n of each and return the seconds taken
    (wall clock, process CPU time)."""

    name: str

    def use_threads(self, n: int) -> None:
        """Run the next segments with n torch threads."""
        torch.set_num_threads(n)

    @property
    def branches(self) -> int | None:
        """Loss branches run at once (sac-cli only)."""
        return None

    def updates(self, n: int) -> tuple[float, float]:
        raise NotImplementedError

    def steps(self, n: int) -> tuple[float, float]:
        raise NotImplementedError


class Timer:
    """Wall-clock and process CPU seconds of a block (the device is synchronised at both
    ends)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> Timer:
        _synchronize(self.device)
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        _synchronize(self.device)
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    @property
    def seconds(self) -> tuple[float, float]:
        return self.wall, self.cpu


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SacCliRunner(Runner):
    """sac-train's own loop: the Trainer built from the same parts (build_parts,
    build_trainer), stepped by Trainer.collect, the hot path of its training loop."""

    def __init__(self, settings: Settings, compiled: bool) -> None:
        self.name = "sac-cli compiled" if compiled else "sac-cli eager"
        self.settings = settings
        cfg = TrainConfig(
            env=EnvConfig(id=settings.env_id),
            agent=AgentConfig(batch_size=settings.batch_size, buffer_size=settings.buffer_size),
            network=NetworkConfig(hidden_sizes=list(settings.hidden)),
            seed=settings.seed,
            learning_starts=settings.learning_starts,
            compile=compiled,
        )
        self.cfg = cfg
        # The branch threads are set per thread count below. Nothing is ever saved: the run
        # directory is never written.
        parts = build_parts(cfg, settings.device)
        self.trainer = build_trainer(cfg, UNUSED_RUN_DIR, parts, config_dict={})
        self.engine, self.buffer, self.metrics = parts.engine, parts.buffer, self.trainer.metrics
        self._collect(settings.learning_starts)  # the uniform-random phase, as sac-train

    def use_threads(self, n: int) -> None:
        torch.set_num_threads(n)
        # What sac-train would choose with n threads.
        self.engine.set_branch_threads(branch_threads_by_default(self.settings.device))

    @property
    def branches(self) -> int | None:
        return 2 if self.engine.branch_threads else 1

    def _collect(self, n: int) -> None:
        trainer = self.trainer
        with self.engine.overlapping():  # as in the trainer's loop
            for _ in range(n):
                episode_done, _ = trainer.collect()
                if episode_done:
                    trainer.new_episode()
        self.metrics.add(self.engine.finish(), new_update=False)  # the last critic step

    def updates(self, n: int) -> tuple[float, float]:
        engine, buffer, batch_size = self.engine, self.buffer, self.cfg.agent.batch_size
        with Timer(self.settings.device) as timer:
            with engine.overlapping():  # as in the trainer's loop
                for _ in range(n):
                    self.metrics.add(engine.update(buffer.sample(batch_size)))
            self.metrics.add(engine.finish(), new_update=False)
            self.metrics.pop_means()  # the host reads the metrics, as a log row does
        return timer.seconds

    def steps(self, n: int) -> tuple[float, float]:
        with Timer(self.settings.device) as timer:
            self._collect(n)
            self.metrics.pop_means()
        return timer.seconds
