"""Function approximators: the squashed Gaussian policy, the Q ensemble and V_psi."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

# In place where the backward pass needs only the activation's output (relu, tanh, elu): each
# layer then allocates and writes one activation tensor instead of two.
FUNCTIONAL_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu_,
    "tanh": torch.tanh_,
    "elu": F.elu_,
    "gelu": F.gelu,
    "silu": F.silu,
}


class _ReLUSignBackward(torch.autograd.Function):
    """relu(x) whose backward multiplies by sign(relu(x)): relu's own derivative (1 where the
    output is positive, else 0) computed from the float output. Used under torch.compile, where
    the default relu backward saves a boolean mask that Inductor's CPU code writes at ~10 ns
    per element, which made the compiled update slower than the eager one."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (output,) = ctx.saved_tensors
        return grad * output.sign()


COMPILE_ACTIVATIONS = {**FUNCTIONAL_ACTIVATIONS, "relu": _ReLUSignBackward.apply}


class Activation(nn.Module):
    """An activation from FUNCTIONAL_ACTIVATIONS as a layer (in place when it can be)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.fn = FUNCTIONAL_ACTIVATIONS[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def use_compile_activations(module: nn.Module, on: bool = True) -> None:
    """Switch every activation below `module` to its torch.compile-friendly form (same values,
    same gradients), or back to the eager one."""
    forms = COMPILE_ACTIVATIONS if on else FUNCTIONAL_ACTIVATIONS
    for m in module.modules():
        if isinstance(m, (Activation, QEnsemble)):
            m.fn = forms[m.name]


LOG_2 = math.log(2.0)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(in_dim, size), Activation(activation)]
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
        self, obs: torch.Tensor, deterministic: bool = False, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns an action in [-1, 1]^dim(A) and its log-density log pi(a|s), summed over dims.
        `noise` is eps when the caller draws it (the update does, so that a compiled update
        consumes the same random numbers as the eager one)."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        if noise is not None:
            eps = noise
        else:
            eps = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)
        u = mean + log_std.exp() * eps  # eq. 11: the reparameterised pre-squash sample
        # log N(u; mean, std) with (u - mean) / std = eps; then the change of variables a = tanh(u).
        gaussian_log_prob = -0.5 * eps.pow(2) - log_std - HALF_LOG_2PI
        log_prob = (gaussian_log_prob - tanh_log_abs_det_jacobian(u)).sum(dim=-1)
        return torch.tanh(u), log_prob

    def action(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """The action alone, as forward draws it (acting needs no log-density)."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        if deterministic:
            return torch.tanh(mean)
        std = log_std.clamp(self.log_std_min, self.log_std_max).exp_()
        return torch.tanh_(torch.randn_like(mean).mul_(std).add_(mean))


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
        self.name = activation
        self.fn = FUNCTIONAL_ACTIVATIONS[activation]
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
            if i < last:
                x = self.fn(torch.baddbmm(bias, x, weight))
            else:
                # One output unit: a dot product per row. On CPU, vecdot forward and backward
                # takes about a third of the time of baddbmm's batched matrix-vector products.
                x = torch.linalg.vecdot(x, weight.transpose(1, 2)) + bias.squeeze(-1)
        return x


class ValueNetwork(nn.Module):
    """V_psi(s), the state-value network of SAC 2018a (eq. 5)."""

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int], activation: str) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, 1, activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def frozen_copy(target: nn.Module, of: nn.Module) -> nn.Module:
    """`target` made a copy of `of`'s weights, outside the optimizers: a target network."""
    target.load_state_dict(of.state_dict())
    return target.requires_grad_(False)
