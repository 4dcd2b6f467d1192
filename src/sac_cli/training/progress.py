"""What a training run shows while it runs, and the summary it ends with.

On a terminal: a live bar with the steps, the speed and ETA of the current phase (uniform
random actions, then learning; measured over the last few seconds, so the learning phase's
speed shows a few seconds after it starts), and the last training and evaluation returns;
each evaluation is also printed as a line above the bar. Redirected: the same line at each
evaluation, and no bar.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from pathlib import Path

from tqdm import tqdm

from sac_cli.cli.commands import command, quoted
from sac_cli.training.checkpoint import BEST, CHECKPOINT_DIR, FINAL, LAST

# The speed is measured over this many seconds of the current phase.
RATE_WINDOW_S = 5.0


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


class Progress:
    """label: what names this run in a sweep (each line starts with it); bar=False: lines
    only, as when several jobs of a sweep share the terminal."""

    def __init__(
        self, total: int, initial: int, learning_starts: int, label: str = "", bar: bool = True
    ) -> None:
        self.interactive = bar and sys.stderr.isatty()
        self.label = f"{label} | " if label else ""
        self.total = total
        self.learning_starts = learning_starts
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit="step",
            dynamic_ncols=True,
            # The speed and ETA are this class's own (per phase), in the postfix.
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
            disable=not self.interactive,
        )
        self.samples: deque[tuple[float, int]] = deque([(time.monotonic(), initial)])
        self.values: dict[str, float] = {}

    def _learning(self, step: int) -> bool:
        return step >= self.learning_starts

    def rate(self, step: int) -> float:
        """Steps per second, up to `step` now, over the last RATE_WINDOW_S seconds of the
        current phase."""
        t0, s0 = self.samples[0]
        elapsed = time.monotonic() - t0
        return (step - s0) / elapsed if elapsed > 0 and step > s0 else math.nan

    def eta(self, step: int) -> float:
        rate = self.rate(step)
        if not self._learning(step) or not rate > 0:
            return math.nan  # the random phase's speed says nothing of the learning phase's
        return (self.total - step) / rate

    def update(self, step: int, **values: float) -> None:
        """Called every step: cheap unless half a second has passed since the last sample."""
        self.values.update(values)
        now = time.monotonic()
        if step == self.learning_starts:  # a new phase: its own speed
            self.samples = deque([(now, step)])
        elif now - self.samples[-1][0] >= 0.5:
            self.samples.append((now, step))
            while now - self.samples[0][0] > RATE_WINDOW_S and len(self.samples) > 2:
                self.samples.popleft()
            if self.interactive:
                self.bar.set_postfix_str(self._postfix(step), refresh=False)
        if self.interactive:
            self.bar.update(step - self.bar.n)

    def _postfix(self, step: int) -> str:
        phase = "learning" if self._learning(step) else "random actions"
        parts = [f"{phase} {self.rate(step):.0f} steps/s"]
        if self._learning(step):
            parts.append(f"ETA {duration(self.eta(step))}")
        parts += [f"{key} {value:.4g}" for key, value in self.values.items()]
        return ", ".join(parts)

    def line(self, step: int, **values: float) -> None:
        """One line at an evaluation: above the bar on a terminal, alone otherwise."""
        self.values.update(values)
        parts = [f"step {step}/{self.total}", f"{self.rate(step):.0f} steps/s"]
        parts.append(f"ETA {duration(self.eta(step))}")
        parts += [f"{key} {value:.4g}" for key, value in values.items()]
        self._print(self.label + " | ".join(parts))

    def note(self, text: str) -> None:
        """A line of news: above the bar on a terminal, alone otherwise."""
        self._print(self.label + text)

    def _print(self, text: str) -> None:
        if self.interactive:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


def summary(
    run_dir: Path,
    step: int,
    steps_trained: int,
    seconds: float,
    last_eval: float,
    best_eval: float,
    best_step: int | None,
) -> str:
    """The lines a finished run ends with: what it reached, where it is, what to run next."""
    speed = f" ({steps_trained / seconds:,.0f} steps/s)" if seconds > 0 and steps_trained else ""
    lines = [f"done: {plural(step, 'step')}; this run trained {steps_trained:,} of them in "
             f"{duration(seconds)}{speed}"]
    if math.isfinite(last_eval):
        best = f", best {best_eval:.1f} at step {best_step:,}" if best_step is not None else ""
        lines.append(f"  evaluation return: final {last_eval:.1f}{best}")
    checkpoints = run_dir / CHECKPOINT_DIR
    names = [name for name in (LAST, BEST, FINAL) if (checkpoints / name).exists()]
    lines += [
        f"  run directory: {quoted(run_dir)}",
        f"  checkpoints:   {quoted(checkpoints)}/ ({', '.join(names) or 'none'})",
        f"  evaluate:      {command('sac-eval')} checkpoint={quoted(checkpoints / BEST)}"
        if BEST in names
        else f"  evaluate:      {command('sac-eval')} checkpoint={quoted(run_dir)}",
        f"  plot:          {command('sac-plot')} {quoted(run_dir)}",
    ]
    return "\n".join(lines)
