"""The function approximators against hand computations: the tanh-Gaussian policy (eq. 11 and
its log-density), the batched Q ensemble, and the Polyak average of target networks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from sac_cli.agents.networks import QEnsemble, TanhGaussianActor, tanh_log_abs_det_jacobian
from sac_cli.training.optim import polyak_update

OBS_DIM, ACT_DIM = 3, 2


def make_actor(**kwargs) -> TanhGaussianActor:
    torch.manual_seed(0)
    return TanhGaussianActor(OBS_DIM, ACT_DIM, [8], "relu", **kwargs).double()


def set_head_output(actor: TanhGaussianActor, mean: list[float], log_std: list[float]) -> None:
    """Make the network output (mean, log_std) exactly, whatever the observation."""
    last = actor.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(mean + log_std, dtype=torch.float64))


def replay_eps(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(shape, dtype=torch.float64)


def test_tanh_jacobian_matches_naive_formula_for_moderate_u() -> None:
    u = torch.linspace(-6.0, 6.0, 101, dtype=torch.float64)
    naive = torch.log(1.0 - torch.tanh(u).pow(2))
    torch.testing.assert_close(tanh_log_abs_det_jacobian(u), naive, rtol=1e-10, atol=1e-10)


def test_tanh_jacobian_is_finite_where_naive_formula_is_minus_infinity() -> None:
    u = torch.tensor([-400.0, -50.0, -30.0, 30.0, 50.0, 400.0], dtype=torch.float64)
    assert torch.isinf(torch.log(1.0 - torch.tanh(u).pow(2))).all()
    stable = tanh_log_abs_det_jacobian(u)
    # 1 - tanh(u)^2 = 4 e^{-2|u|} / (1 + e^{-2|u|})^2 ~ 4 e^{-2|u|} for large |u|.
    torch.testing.assert_close(stable, 2 * math.log(2.0) - 2 * u.abs(), rtol=1e-12, atol=1e-12)


def test_log_prob_matches_torch_transformed_distribution() -> None:
    actor = make_actor()
    obs = torch.randn(64, OBS_DIM, dtype=torch.float64)
    torch.manual_seed(1)
    action, log_prob = actor(obs)
    mean, log_std = actor.net(obs).chunk(2, dim=-1)
    dist = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform(cache_size=1)])
    expected = dist.log_prob(action).sum(-1)
    assert action.shape == (64, ACT_DIM) and log_prob.shape == (64,)
    torch.testing.assert_close(log_prob, expected, rtol=1e-8, atol=1e-8)


def test_log_prob_is_finite_and_correct_for_large_pre_squash_values() -> None:
    actor = make_actor()
    mean, log_std = [30.0, -45.0], [-1.0, 0.5]
    set_head_output(actor, mean, log_std)
    obs = torch.randn(16, OBS_DIM, dtype=torch.float64)
    torch.manual_seed(2)
    action, log_prob = actor(obs)
    eps = replay_eps(2, (16, ACT_DIM))
    mu, std = torch.tensor(mean, dtype=torch.float64), torch.tensor(log_std).double().exp()
    u = mu + std * eps
    assert (action.abs() == 1.0).all()  # tanh saturates: the naive correction is log(0)
    assert torch.isinf(torch.log(1.0 - action.pow(2))).all()
    expected = (Normal(mu, std).log_prob(u) - (2 * math.log(2.0) - 2 * u.abs())).sum(-1)
    assert torch.isfinite(log_prob).all()
    torch.testing.assert_close(log_prob, expected, rtol=1e-10, atol=1e-10)


def test_deterministic_action_is_tanh_of_mean() -> None:
    actor = make_actor()
    obs = torch.randn(10, OBS_DIM, dtype=torch.float64)
    action, log_prob = actor(obs, deterministic=True)
    mean, log_std = actor.net(obs).chunk(2, dim=-1)
    torch.testing.assert_close(action, torch.tanh(mean))
    # At eps = 0 the density is N(mean; mean, std) / |d tanh/du| at u = mean.
    expected = (
        -log_std - 0.5 * math.log(2 * math.pi) - torch.log(1 - torch.tanh(mean).pow(2))
    ).sum(-1)
    torch.testing.assert_close(log_prob, expected)
    again, _ = actor(obs, deterministic=True)
    assert torch.equal(action, again)


def test_actions_lie_in_unit_box() -> None:
    torch.manual_seed(3)
    actor = TanhGaussianActor(OBS_DIM, ACT_DIM, [8], "tanh")
    with torch.no_grad():
        actor.net[-1].bias.copy_(torch.tensor([5.0, -5.0, 2.0, 2.0]))  # wide, off-centre
    action, log_prob = actor(100.0 * torch.randn(2000, OBS_DIM))
    assert action.abs().max() <= 1.0
    assert (action > 0.99).any() and (action < -0.99).any()
    assert torch.isfinite(log_prob).all()


@pytest.mark.parametrize(("raw", "clamped"), [(100.0, 2.0), (-100.0, -20.0), (-3.0, -3.0)])
def test_log_std_is_clamped(raw: float, clamped: float) -> None:
    actor = make_actor(log_std_min=-20.0, log_std_max=2.0)
    set_head_output(actor, [0.1, -0.2], [raw, raw])
    obs = torch.randn(5, OBS_DIM, dtype=torch.float64)
    torch.manual_seed(4)
    action, log_prob = actor(obs)
    eps = replay_eps(4, (5, ACT_DIM))
    u = torch.tensor([0.1, -0.2], dtype=torch.float64) + math.exp(clamped) * eps
    torch.testing.assert_close(action, torch.tanh(u))
    expected = (
        -0.5 * eps.pow(2) - clamped - 0.5 * math.log(2 * math.pi) - tanh_log_abs_det_jacobian(u)
    ).sum(-1)
    torch.testing.assert_close(log_prob, expected)


def test_reparameterised_sample_passes_gradients_to_actor_parameters() -> None:
    actor = make_actor()
    mean, log_std = [0.3, -0.4], [-0.5, 0.2]
    set_head_output(actor, mean, log_std)
    obs = torch.randn(7, OBS_DIM, dtype=torch.float64)
    torch.manual_seed(5)
    action, _ = actor(obs)
    action.sum().backward()
    # a = tanh(mu + exp(log_std) eps): da/dmu = 1 - a^2 and da/dlog_std = (1 - a^2) std eps.
    eps = replay_eps(5, (7, ACT_DIM))
    u = torch.tensor(mean).double() + torch.tensor(log_std).double().exp() * eps
    d_tanh = 1 - torch.tanh(u).pow(2)
    expected_bias_grad = torch.cat(
        [d_tanh.sum(0), (d_tanh * torch.tensor(log_std).double().exp() * eps).sum(0)]
    )
    torch.testing.assert_close(actor.net[-1].bias.grad, expected_bias_grad)
    # With ordinary weights the gradient reaches every layer.
    actor = make_actor()
    torch.manual_seed(5)
    action, _ = actor(obs)
    action.sum().backward()
    for name, param in actor.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def q_head_as_mlp(q: QEnsemble, head: int) -> nn.Sequential:
    """An ordinary MLP whose nn.Linear layers hold head `head`'s slices of the ensemble."""
    layers: list[nn.Module] = []
    for i, (weight, bias) in enumerate(zip(q.weights, q.biases, strict=True)):
        fan_in, fan_out = weight.shape[1:]
        linear = nn.Linear(fan_in, fan_out, dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight[head].T)
            linear.bias.copy_(bias[head].squeeze(0))
        layers.append(linear)
        if i < len(q.weights) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def make_q(n_heads: int = 3) -> QEnsemble:
    torch.manual_seed(6)
    return QEnsemble(OBS_DIM, ACT_DIM, [8, 5], "relu", n_heads=n_heads).double()


def test_q_ensemble_heads_are_independent_mlps() -> None:
    q = make_q(n_heads=3)
    obs = torch.randn(11, OBS_DIM, dtype=torch.float64)
    action = torch.rand(11, ACT_DIM, dtype=torch.float64) * 2 - 1
    values = q(obs, action)
    assert values.shape == (3, 11)
    for head in range(3):
        expected = q_head_as_mlp(q, head)(torch.cat([obs, action], -1)).squeeze(-1)
        torch.testing.assert_close(values[head], expected, rtol=1e-12, atol=1e-12)


def test_q_ensemble_heads_differ_at_initialisation() -> None:
    q = make_q(n_heads=2)
    for weight in q.weights:
        assert not torch.equal(weight[0], weight[1])
    values = q(torch.randn(20, OBS_DIM).double(), torch.randn(20, ACT_DIM).double())
    assert (values[0] - values[1]).abs().min() > 0


def test_q_ensemble_detach_params_passes_gradients_to_the_action_only() -> None:
    q = make_q(n_heads=2)
    obs = torch.randn(9, OBS_DIM, dtype=torch.float64)
    action = torch.randn(9, ACT_DIM, dtype=torch.float64, requires_grad=True)
    detached = q(obs, action, detach_params=True)
    torch.testing.assert_close(detached, q(obs, action), rtol=0, atol=0)
    detached.sum().backward()
    assert action.grad is not None and action.grad.abs().sum() > 0
    for name, param in q.named_parameters():
        assert param.grad is None, name
    # The gradient through the action is the ordinary one.
    action_2 = action.detach().clone().requires_grad_(True)
    q(obs, action_2).sum().backward()
    torch.testing.assert_close(action.grad, action_2.grad)
    assert all(p.grad is not None for p in q.parameters())


def test_polyak_update_is_a_lerp_toward_online() -> None:
    torch.manual_seed(7)
    target, online = nn.Linear(4, 3).double(), nn.Linear(4, 3).double()
    before = [p.detach().clone() for p in target.parameters()]
    polyak_update(target, online, 0.05)
    for t_new, t_old, o in zip(target.parameters(), before, online.parameters(), strict=True):
        torch.testing.assert_close(t_new, 0.95 * t_old + 0.05 * o, rtol=1e-14, atol=1e-14)


def test_polyak_update_with_tau_one_copies() -> None:
    target, online = make_q(), QEnsemble(OBS_DIM, ACT_DIM, [8, 5], "relu", n_heads=3).double()
    assert not torch.equal(target.weights[0], online.weights[0])
    polyak_update(target, online, 1.0)
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        assert torch.equal(t, o)
