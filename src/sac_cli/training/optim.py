"""Optimizer construction and target-network averaging shared by every agent."""

from __future__ import annotations

import torch
from torch import nn


def adam(groups: list[dict]) -> torch.optim.Adam:
    """Adam over parameter groups (each with its "lr"), with the fused kernel where the
    device has one, else the foreach implementation."""
    lr = groups[0]["lr"]
    try:
        return torch.optim.Adam(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(groups, lr=lr, foreach=True)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau online, for every parameter at once."""
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    torch._foreach_lerp_(target_params, online_params, tau)
