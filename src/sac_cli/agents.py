"""The `agent` config group's options: a name -> the class that implements it; and the
process settings that the hot path depends on (compile, the CPU allocator)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

import torch

from sac_cli.config import AgentName, TrainConfig
from sac_cli.sac import SAC, SoftActorCritic
from sac_cli.sac_v1 import SACv1

AGENTS: dict[AgentName, type[SoftActorCritic]] = {AgentName.sac: SAC, AgentName.sac_v1: SACv1}

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def build_agent(
    cfg: TrainConfig, obs_dim: int, act_dim: int, device: torch.device
) -> SoftActorCritic:
    """The agent of cfg.agent.name on `device` (its update runs in update.UpdateEngine)."""
    if device.type == "cpu":
        keep_freed_memory()
    with torch.device(device):
        return AGENTS[cfg.agent.name](
            obs_dim, act_dim, cfg.agent, cfg.network, cfg.optimizer, cfg.temperature
        )


@functools.cache
def keep_freed_memory() -> bool:
    """Stop glibc from handing freed memory back to the OS after every update.

    Each update allocates and frees the same few-hundred-kilobyte activations and gradients.
    By default glibc serves those from fresh mmap()s or trims the heap top after each free,
    so every update page-faults its working set back in: with 256-256 networks, ~200 faults
    and 5-10% of the update's CPU time on a 2-core machine. Keeping freed memory (up to the
    size of the live working set) removes them. True if applied (Linux with glibc), False
    elsewhere.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to do
        return False
    # Blocks up to 32 MiB (glibc's maximum) come from the heap, not from mmap; the heap is
    # trimmed only when 1 GiB at its top is free.
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
