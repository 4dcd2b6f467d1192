"""Optimizer construction and target-network averaging shared by every agent."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def adam(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where the device has one, else the foreach implementation."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau online, for every parameter at once."""
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    torch._foreach_lerp_(target_params, online_params, tau)
