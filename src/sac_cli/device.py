"""`device=auto|cpu|cuda|cuda:N|mps` -> a torch.device that exists on this machine."""

from __future__ import annotations

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
