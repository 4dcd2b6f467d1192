"""Updates of an agent as training runs them: through the update engine, one per agent."""

from __future__ import annotations

import weakref

import torch

from sac_cli.training.update import Metrics, UpdateEngine

_engines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def engine_of(agent, **options) -> UpdateEngine:
    """The agent's engine (one thread, eager, on the CPU unless `options` say otherwise),
    made at its first update and kept for the next ones: its optimizers hold Adam's moments."""
    if agent not in _engines:
        options = {"device": torch.device("cpu"), "branch_threads": False, **options}
        _engines[agent] = UpdateEngine(agent, **options)
    return _engines[agent]


def update(agent, batch) -> Metrics:
    return engine_of(agent).update(batch)
