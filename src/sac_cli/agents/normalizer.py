"""Observation normalisation (env.normalize_obs=true): observations standardised by a running
mean and variance of the observations collected so far, clipped to [-CLIP, CLIP].

The statistics are buffers of the agent, so checkpoints, sac-eval and sac-export carry them;
only the trainer's collection updates them (`update`), so evaluation and the updates read
them frozen. They are kept in float64: after millions of observations, float32 sums would
round away what one more observation adds.
"""

from __future__ import annotations

import torch
from torch import nn

CLIP = 10.0  # as Stable-Baselines3's VecNormalize (clip_obs)
EPSILON = 1e-8


class ObservationNormalizer(nn.Module):
    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(obs_dim, dtype=torch.float64))

    @torch.no_grad()
    def update(self, obs: torch.Tensor) -> None:
        """Add a batch of observations (rows) to the statistics: Chan et al.'s parallel update
        of a mean and a variance, exact for any split of the data into batches."""
        batch = obs.reshape(-1, self.mean.shape[0]).to(torch.float64)
        n = batch.shape[0]
        batch_mean = batch.mean(dim=0)
        batch_var = batch.var(dim=0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(obs.dtype), (self.var + EPSILON).sqrt().to(obs.dtype)
        return ((obs - mean) / std).clamp(-CLIP, CLIP)
