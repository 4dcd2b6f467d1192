"""`device=auto|cpu|cuda|cuda:N|mps` -> a torch.device that exists on this machine; the CPU
cores this process may use; the allocator setting the CPU hot path depends on."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

import torch

from sac_cli.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(
                "device=mps but this machine has no Apple GPU: use device=auto or device=cpu"
            )
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(
                f"device={name} but torch sees no CUDA GPU here "
                f"(torch {torch.__version__}): use device=auto or device=cpu"
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device={name} but only {torch.cuda.device_count()} CUDA GPU(s) exist")
        return device
    raise UserError(f"device={name} is not one of auto, cpu, cuda, cuda:N, mps")


def usable_cpus() -> int:
    """Cores this process may run on: its CPU affinity (a SLURM allocation, taskset) where the
    OS tells it, else every core."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cpus or 1


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on `device` (None where it cannot be told): free GPU
    memory on CUDA, the kernel's MemAvailable estimate on Linux for the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


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
