"""The types that agents, the replay buffer and the update engine share (SB3's
type_aliases): a batch of transitions, and what a loss branch returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch


class Batch(NamedTuple):
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


# Named scalars, detached, for the log (they stay tensors until a row is written).
Metrics = dict[str, torch.Tensor]
# A loss branch's result: the loss to differentiate and its metrics.
Losses = tuple[torch.Tensor, Metrics]
LossFn = Callable[..., Losses]
