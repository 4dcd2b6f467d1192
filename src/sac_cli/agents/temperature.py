"""The temperature alpha: a constant, or log-alpha learned toward a target entropy (2018b)."""

from __future__ import annotations

import math

import torch
from torch import nn


class Temperature(nn.Module):
    def __init__(self, alpha: float, learned: bool, target_entropy: float) -> None:
        super().__init__()
        self.learned = learned
        self.target_entropy = target_entropy
        # Optimising log-alpha keeps alpha positive without constraints (its own optimizer:
        # the agent's "temperature" parameter group).
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)), requires_grad=learned)

    @property
    def alpha(self) -> torch.Tensor:
        """alpha as a constant for the Q, V and policy losses."""
        return self.log_alpha.detach().exp()

    def loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        """J(alpha) = E_{a~pi}[-alpha log pi(a|s) - alpha H_target] (2018b, eq. 18)."""
        return -(self.log_alpha.exp() * (log_prob.detach() + self.target_entropy)).mean()

