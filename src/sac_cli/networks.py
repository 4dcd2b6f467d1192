"""Function approximators: the squashed Gaussian policy, the Q ensemble and V_psi."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
FUNCTIONAL_ACTIVATIONS = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
}

LOG_2 = math.log(2.0)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(in_dim, size), ACTIVATIONS[activation]()]
        in_dim = size
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def tanh_log_abs_det_jacobian(u: torch.Tensor) -> torch.Tensor:
    """log(1 - tanh(u)^2) as 2 (log 2 - u - softplus(-2u)): finite even for large |u|."""
    return 2.0 * (LOG_2 - u - F.softplus(-2.0 * u))


class TanhGaussianActor(nn.Module):
    """pi_phi(a|s): a = tanh(mu_phi(s) + sigma_phi(s) * eps), eps ~ N(0, I) (eq. 11)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int],
        activation: str,
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, 2 * act_dim, activation)
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max

    def forward(
        self, obs: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns an action in [-1, 1]^dim(A) and its log-density log pi(a|s), summed over dims."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        eps = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)
        u = mean + log_std.exp() * eps  # eq. 11: the reparameterised pre-squash sample
        # log N(u; mean, std) with (u - mean) / std = eps; then the change of variables a = tanh(u).
        gaussian_log_prob = -0.5 * eps.pow(2) - log_std - HALF_LOG_2PI
        log_prob = (gaussian_log_prob - tanh_log_abs_det_jacobian(u)).sum(dim=-1)
        return torch.tanh(u), log_prob


class QEnsemble(nn.Module):
    """n independent Q_theta_i(s, a) MLPs evaluated together: one batched matmul per layer."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int],
        activation: str,
        n_heads: int = 2,
    ) -> None:
        super().__init__()
        sizes = [obs_dim + act_dim, *hidden_sizes, 1]
        self.n_heads = n_heads
        self.activation = FUNCTIONAL_ACTIVATIONS[activation]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            # nn.Linear's default initialisation, drawn independently for every head.
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(
                nn.Parameter(torch.empty(n_heads, fan_in, fan_out).uniform_(-bound, bound))
            )
            self.biases.append(
                nn.Parameter(torch.empty(n_heads, 1, fan_out).uniform_(-bound, bound))
            )

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, detach_params: bool = False
    ) -> torch.Tensor:
        """Q values of shape (n_heads, batch). With detach_params, gradients reach the inputs only
        (the policy loss, eq. 12, differentiates Q through the action but must not train Q)."""
        x = torch.cat([obs, action], dim=-1)
        x = x.unsqueeze(0).expand(self.n_heads, *x.shape)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if detach_params:
                weight, bias = weight.detach(), bias.detach()
            x = torch.baddbmm(bias, x, weight)
            if i < last:
                x = self.activation(x)
        return x.squeeze(-1)


class ValueNetwork(nn.Module):
    """V_psi(s), the state-value network of SAC 2018a (eq. 5)."""

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int], activation: str) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, 1, activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)
