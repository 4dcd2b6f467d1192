"""The policy as it is shipped (sac-export): the deterministic action, tanh(mu_phi(s)) (the
mean of eq. 11's Gaussian, squashed; s standardised first when observations are normalised),
mapped from [-1, 1] to the environment's bounds as the
training environment's action rescaling does. A batch of observations in, actions out."""

from __future__ import annotations

import torch
from torch import nn

from sac_cli.agents.networks import TanhGaussianActor
from sac_cli.agents.normalizer import ObservationNormalizer


class DeterministicPolicy(nn.Module):
    def __init__(
        self,
        actor: TanhGaussianActor,
        low: torch.Tensor,
        high: torch.Tensor,
        obs_normalizer: ObservationNormalizer | None = None,
    ) -> None:
        super().__init__()
        self.obs_normalizer = obs_normalizer if obs_normalizer is not None else nn.Identity()
        self.net = actor.net
        self.register_buffer("low", low.to(torch.float32))
        self.register_buffer("half_range", ((high - low) / 2).to(torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean, _ = self.net(self.obs_normalizer(obs)).chunk(2, dim=-1)
        return self.low + self.half_range * (torch.tanh(mean) + 1.0)
