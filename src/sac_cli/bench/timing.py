"""Interleaved timing: every variant set up and warmed up first, then each timed once per
repeat and thread count in turn, so that a busy machine slows them alike."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence

from sac_cli.bench.peers import PeerRunner
from sac_cli.bench.runners import Result, Runner, SacCliRunner, Settings


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """MuJoCo v4 and torch.compile warnings say nothing about speed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.getLogger("torch").level
        logging.getLogger("torch").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("torch").setLevel(level)


def run(
    settings: Settings,
    variants: Sequence[str],
    threads: Sequence[int],
    say: Callable[[str], None],
) -> list[Result]:
    """Set up and warm up every variant, then time them in interleaved repeats: for each
    repeat and each thread count, every variant once."""
    factories: dict[str, Callable[[], Runner]] = {
        "eager": lambda: SacCliRunner(settings, compiled=False),
        "compiled": lambda: SacCliRunner(settings, compiled=True),
        "sb3": lambda: PeerRunner(settings, "sb3"),
        "sbx": lambda: PeerRunner(settings, "sbx"),
    }
    runners: dict[str, Runner] = {}
    setup_s: dict[str, float] = {}
    for variant in variants:
        say(f"setting up {variant} ...")
        start = time.perf_counter()
        runner = factories[variant]()
        runner.use_threads(threads[0])
        runner.updates(settings.warmup_updates)
        runner.steps(settings.warmup_steps)
        runners[variant], setup_s[variant] = runner, time.perf_counter() - start
    results = []
    for n in threads:
        for variant, runner in runners.items():
            runner.use_threads(n)
            if n != threads[0]:  # a first segment at this thread count starts its threads
                runner.updates(max(1, settings.warmup_updates // 4))
            results.append(
                Result(variant, runner.name, n, runner.branches, setup_s=setup_s[variant])
            )
    for repeat in range(settings.repeats):
        for result in results:
            runner = runners[result.variant]
            runner.use_threads(result.threads)
            wall, cpu = runner.updates(settings.updates)
            result.updates_per_s.append(settings.updates / wall)
            result.updates_per_cpu_s.append(settings.updates / cpu)
            wall, cpu = runner.steps(settings.steps)
            result.steps_per_s.append(settings.steps / wall)
            result.steps_per_cpu_s.append(settings.steps / cpu)
        say(
            f"repeat {repeat + 1}/{settings.repeats}: "
            + ", ".join(
                f"{r.variant} ({r.threads}t) {r.steps_per_s[-1]:.1f} steps/s" for r in results
            )
        )
    return results


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"
