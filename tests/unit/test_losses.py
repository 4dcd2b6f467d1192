"""The SAC losses and update steps against hand computations of the seed's equations
(Haarnoja et al. 2018a, eqs. 2-13; temperature loss of 2018b) on tiny float64 networks."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers.updates import update
from torch.distributions import Normal
from torch.nn import functional as F

from sac_cli.agents.losses import policy_loss, q_loss, soft_q_target, value_loss
from sac_cli.agents.networks import QEnsemble, TanhGaussianActor
from sac_cli.agents.sac import SAC
from sac_cli.agents.sac_v1 import SACv1
from sac_cli.agents.temperature import Temperature
from sac_cli.config import (
    AgentConfig,
    AgentName,
    NetworkConfig,
    SACv1OptimizerConfig,
    TemperatureConfig,
    TemperatureMode,
)
from sac_cli.training.replay import Batch, ReplayBuffer

OBS_DIM, ACT_DIM, BATCH = 3, 2, 6
GAMMA, TAU, REWARD_SCALE = 0.9, 0.1, 2.0
LR = {"actor": 1e-3, "critic": 2e-3, "value": 3e-3, "alpha": 4e-3}
ADAM_EPS = 1e-8
DESIGN_METRICS = {"loss/critic", "loss/actor", "alpha", "q/mean", "policy/entropy"}


def t64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ------------------------------------------------------------------------------------------
# The loss functions alone
# ------------------------------------------------------------------------------------------


def test_soft_q_target_bootstraps_unless_terminated() -> None:
    reward, next_value = t64([1.0, -2.0, 0.5]), t64([10.0, 20.0, -4.0])
    terminated = t64([0.0, 1.0, 0.0])
    target = soft_q_target(reward, terminated, next_value, 0.9)
    # eqs. 2, 8: r + gamma V(s'); after a termination there is no s' to bootstrap from.
    torch.testing.assert_close(target, t64([1.0 + 0.9 * 10.0, -2.0, 0.5 - 0.9 * 4.0]))


def test_soft_q_target_bootstraps_through_truncation_from_the_buffer() -> None:
    """A time-limit truncation is stored as terminated=0 with its true final observation."""
    buffer = ReplayBuffer(100, OBS_DIM, ACT_DIM, "cpu", seed=0)
    obs = [[float(t), 1.0, 2.0] for t in range(4)]
    for t in range(3):  # three steps, the last one cut by a time limit
        buffer.add(obs[t], [0.0, 0.0], 1.0 + t, obs[t + 1], terminated=False, truncated=t == 2)
    buffer.add([9.0, 9.0, 9.0], [0.0, 0.0], 7.0, [5.0, 5.0, 5.0], terminated=True, truncated=False)
    batch = buffer.sample(400)
    target = soft_q_target(batch.rewards, batch.terminated, batch.next_obs.sum(-1), GAMMA)
    truncated = batch.obs[:, 0] == 2.0
    terminated = batch.obs[:, 0] == 9.0
    assert truncated.any() and terminated.any()
    # V(s') := sum(s'): the final observation [3, 1, 2] bootstraps; the terminal one does not.
    assert torch.allclose(target[truncated], torch.tensor(3.0 + GAMMA * 6.0))
    assert torch.allclose(target[terminated], torch.tensor(7.0))


def test_q_loss_is_half_mse_per_head_summed_over_heads() -> None:
    torch.manual_seed(0)
    q_values, target = torch.randn(3, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    expected = 0.0
    for head in range(3):
        expected += sum(0.5 * (q_values[head, i] - target[i]) ** 2 for i in range(5)) / 5
    torch.testing.assert_close(q_loss(q_values, target), expected)


def test_value_loss_is_half_mse() -> None:
    value, value_target = t64([1.0, 2.0, -1.0, 0.0]), t64([0.0, 4.0, -1.0, 3.0])
    # eq. 5: 1/2 mean of (1, 4, 0, 9)
    torch.testing.assert_close(value_loss(value, value_target), t64(0.5 * 14.0 / 4.0))


def test_policy_loss_is_alpha_log_pi_minus_q() -> None:
    log_prob, q = t64([-1.0, 0.5, 2.0]), t64([3.0, -1.0, 0.0])
    # eq. 12 with the temperature: mean of 0.2 log pi - Q
    expected = (0.2 * -1.0 - 3.0 + 0.2 * 0.5 + 1.0 + 0.2 * 2.0 - 0.0) / 3
    torch.testing.assert_close(policy_loss(log_prob, q, t64(0.2)), t64(expected))


def test_temperature_loss_and_its_gradient() -> None:
    temperature = Temperature(alpha=0.5, learned=True, target_entropy=-2.0).double()
    log_prob = t64([1.0, 3.0, -0.5]).requires_grad_(True)
    loss = temperature.loss(log_prob)
    # -alpha (log pi + H_target), averaged: -0.5 * mean(-1, 1, -2.5)
    torch.testing.assert_close(loss, t64(-0.5 * (-2.5 / 3)))
    loss.backward()
    # d/d log_alpha of -exp(log_alpha) mean(log pi + H) is the loss itself; log pi is a constant.
    torch.testing.assert_close(temperature.log_alpha.grad, t64(-0.5 * (-2.5 / 3)))
    assert log_prob.grad is None
    torch.testing.assert_close(temperature.alpha, t64(0.5))
    assert not temperature.alpha.requires_grad


# ------------------------------------------------------------------------------------------
# One full update, recomputed by hand
# ------------------------------------------------------------------------------------------


def make_agent(
    cls, mode: TemperatureMode, alpha: float = 0.5, target_entropy=None, **agent_cfg
) -> SAC | SACv1:
    torch.manual_seed(0)
    name = AgentName.sac if cls is SAC else AgentName.sac_v1
    agent = cls(
        OBS_DIM,
        ACT_DIM,
        AgentConfig(name=name, gamma=GAMMA, tau=TAU, reward_scale=REWARD_SCALE, **agent_cfg),
        NetworkConfig(hidden_sizes=[8]),
        SACv1OptimizerConfig(  # value_lr for sac_v1; agent=sac ignores it
            actor_lr=LR["actor"], critic_lr=LR["critic"], value_lr=LR["value"], alpha_lr=LR["alpha"]
        ),
        TemperatureConfig(mode=mode, alpha=alpha, target_entropy=target_entropy),
    )
    return agent.double()


def drift(target: torch.nn.Module) -> None:
    """Move a target network away from its online copy, as training does, so that using one
    in place of the other shows."""
    with torch.no_grad():
        for p in target.parameters():
            p.add_(0.1 * torch.randn_like(p))


def make_batch(seed: int = 1, size: int = BATCH) -> Batch:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    terminated = torch.zeros(size, dtype=torch.float64)
    terminated[::3] = 1.0
    return Batch(
        obs=randn(size, OBS_DIM),
        actions=torch.tanh(randn(size, ACT_DIM)),
        rewards=randn(size),
        next_obs=randn(size, OBS_DIM),
        terminated=terminated,
    )


def q_by_hand(q: QEnsemble, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Each head as its own ReLU MLP, one at a time: shape (heads, batch)."""
    heads = []
    for h in range(q.n_heads):
        x = torch.cat([obs, action], dim=-1)
        for layer, (weight, bias) in enumerate(zip(q.weights, q.biases, strict=True)):
            x = x @ weight[h] + bias[h, 0]
            if layer < len(q.weights) - 1:
                x = F.relu(x)
        heads.append(x[:, 0])
    return torch.stack(heads)


def v_by_hand(value_net, obs: torch.Tensor) -> torch.Tensor:
    hidden, out = value_net.net[0], value_net.net[2]
    return (F.relu(obs @ hidden.weight.T + hidden.bias) @ out.weight.T + out.bias)[:, 0]


def sample_by_hand(actor: TanhGaussianActor, obs: torch.Tensor):
    """eq. 11, a = tanh(mu + sigma eps), drawing eps from the global generator as the actor does;
    log pi(a|s) by the change of variables from the Gaussian density of u."""
    mean, log_std = actor.net(obs).chunk(2, dim=-1)
    std = log_std.clamp(actor.log_std_min, actor.log_std_max).exp()
    u = mean + std * torch.randn(mean.shape, dtype=mean.dtype)
    action = torch.tanh(u)
    log_prob = (Normal(mean, std).log_prob(u) - torch.log(1.0 - action.pow(2))).sum(-1)
    return action, log_prob


def adam_first_step(param: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
    """Adam's first step from zero moments: m_hat = g, v_hat = g^2."""
    return param - lr * grad / (grad.abs() + ADAM_EPS)


def grads(loss: torch.Tensor, params) -> list[torch.Tensor]:
    params = list(params)
    out = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, out, strict=True)]


def check_step(module_after, module_before, loss: torch.Tensor, lr: float) -> None:
    """The module's gradient is that of `loss` alone, and Adam moved it with its own rate."""
    after, before = list(module_after.parameters()), list(module_before.parameters())
    expected_grads = grads(loss, before)
    for p, p0, g in zip(after, before, expected_grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(p.detach(), adam_first_step(p0.detach(), g, lr))


def check_metrics(metrics: dict, expected: dict) -> None:
    assert set(metrics) == set(expected)
    for name, value in expected.items():
        assert isinstance(metrics[name], torch.Tensor) and metrics[name].dim() == 0, name
        torch.testing.assert_close(metrics[name], value.detach(), msg=name)


@pytest.mark.parametrize("mode", [TemperatureMode.auto, TemperatureMode.fixed])
def test_sac_update_matches_hand_computation(mode: TemperatureMode) -> None:
    agent = make_agent(SAC, mode)
    drift(agent.critic_target)
    before = copy.deepcopy(agent)
    batch = make_batch()
    torch.manual_seed(42)
    metrics = update(agent, batch)

    torch.manual_seed(42)  # replay the reparameterisation noise in the order the update draws it
    alpha = before.temperature.log_alpha.detach().exp()
    with torch.no_grad():
        next_action, next_log_prob = sample_by_hand(before.actor, batch.next_obs)
        next_q = q_by_hand(before.critic_target, batch.next_obs, next_action).min(0).values
        next_value = next_q - alpha * next_log_prob  # eq. 3 with the clipped double-Q target
        target = REWARD_SCALE * batch.rewards + GAMMA * (1 - batch.terminated) * next_value
    q = q_by_hand(before.critic, batch.obs, batch.actions)
    critic_loss = 0.5 * ((q - target) ** 2).mean(1).sum()  # eq. 7 per head, summed
    action, log_prob = sample_by_hand(before.actor, batch.obs)
    q_pi = q_by_hand(before.critic, batch.obs, action).min(0).values
    actor_loss = (alpha * log_prob - q_pi).mean()  # eq. 12
    assert batch.terminated.any() and (batch.terminated == 0).any()

    # The critic moves by eq. 7 only: the policy loss, which also depends on the critic's
    # parameters through Q(s, f(eps; s)), must not train them.
    assert any(g.abs().sum() > 0 for g in grads(actor_loss, before.critic.parameters()))
    check_step(agent.critic, before.critic, critic_loss, LR["critic"])
    check_step(agent.actor, before.actor, actor_loss, LR["actor"])

    # Polyak: target <- (1 - tau) target + tau online, with the freshly updated online critic.
    for t, t0, o in zip(
        agent.critic_target.parameters(),
        before.critic_target.parameters(),
        agent.critic.parameters(),
        strict=True,
    ):
        torch.testing.assert_close(t, (1 - TAU) * t0 + TAU * o, rtol=1e-12, atol=1e-14)
        assert t.grad is None

    expected = {
        "loss/critic": critic_loss,
        "loss/actor": actor_loss,
        "alpha": alpha,
        "q/mean": q.mean(),
        "policy/entropy": -log_prob.mean(),
    }
    log_alpha = agent.temperature.log_alpha.detach()
    if mode == TemperatureMode.auto:
        h_target = -float(ACT_DIM)
        alpha_loss = -(alpha * (log_prob + h_target)).mean()
        expected["loss/alpha"] = alpha_loss
        torch.testing.assert_close(agent.temperature.log_alpha.grad, alpha_loss.detach())
        torch.testing.assert_close(
            log_alpha,
            adam_first_step(before.temperature.log_alpha.detach(), alpha_loss, LR["alpha"]),
        )
    else:
        assert torch.equal(log_alpha, before.temperature.log_alpha.detach())
    check_metrics(metrics, expected)


@pytest.mark.parametrize("mode", [TemperatureMode.fixed, TemperatureMode.auto])
def test_sac_v1_update_matches_hand_computation(mode: TemperatureMode) -> None:
    agent = make_agent(SACv1, mode, alpha=0.3)
    drift(agent.value_target)
    before = copy.deepcopy(agent)
    batch = make_batch(seed=2)
    torch.manual_seed(7)
    metrics = update(agent, batch)

    torch.manual_seed(7)
    alpha = before.temperature.log_alpha.detach().exp()
    torch.testing.assert_close(alpha, torch.tensor(0.3, dtype=torch.float64))
    action, log_prob = sample_by_hand(before.actor, batch.obs)
    q_pi = q_by_hand(before.critic, batch.obs, action).min(0).values
    value_target = (q_pi - alpha * log_prob).detach()  # E_a[min_i Q_i(s, a) - alpha log pi(a|s)]
    value = v_by_hand(before.value, batch.obs)
    loss_v = 0.5 * ((value - value_target) ** 2).mean()  # eq. 5
    with torch.no_grad():
        v_next = v_by_hand(before.value_target, batch.next_obs)
        target = REWARD_SCALE * batch.rewards + GAMMA * (1 - batch.terminated) * v_next  # eq. 8
    q = q_by_hand(before.critic, batch.obs, batch.actions)
    critic_loss = 0.5 * ((q - target) ** 2).mean(1).sum()  # eq. 7
    actor_loss = (alpha * log_prob - q_pi).mean()  # eq. 12

    check_step(agent.value, before.value, loss_v, LR["value"])
    check_step(agent.critic, before.critic, critic_loss, LR["critic"])
    check_step(agent.actor, before.actor, actor_loss, LR["actor"])

    # psi_bar <- (1 - tau) psi_bar + tau psi
    for t, t0, o in zip(
        agent.value_target.parameters(),
        before.value_target.parameters(),
        agent.value.parameters(),
        strict=True,
    ):
        torch.testing.assert_close(t, (1 - TAU) * t0 + TAU * o, rtol=1e-12, atol=1e-14)

    expected = {
        "loss/critic": critic_loss,
        "loss/actor": actor_loss,
        "loss/value": loss_v,
        "alpha": alpha,
        "q/mean": q.mean(),
        "policy/entropy": -log_prob.mean(),
    }
    if mode == TemperatureMode.auto:
        expected["loss/alpha"] = -(alpha * (log_prob + -float(ACT_DIM))).mean()
    check_metrics(metrics, expected)


@pytest.mark.parametrize("cls", [SAC, SACv1])
def test_targets_follow_target_update_interval(cls) -> None:
    agent = make_agent(cls, TemperatureMode.auto, target_update_interval=2)
    drift(agent.critic_target if cls is SAC else agent.value_target)
    target, online = (
        (agent.critic_target, agent.critic) if cls is SAC else (agent.value_target, agent.value)
    )
    start = [p.clone() for p in target.parameters()]
    update(agent, make_batch(seed=0))
    assert all(torch.equal(p, p0) for p, p0 in zip(target.parameters(), start, strict=True))
    update(agent, make_batch(seed=1))
    for p, p0, o in zip(target.parameters(), start, online.parameters(), strict=True):
        torch.testing.assert_close(p, (1 - TAU) * p0 + TAU * o)


@pytest.mark.parametrize("cls", [SAC, SACv1])
def test_metric_names_follow_the_design(cls) -> None:
    auto = update(make_agent(cls, TemperatureMode.auto), make_batch())
    fixed = update(make_agent(cls, TemperatureMode.fixed), make_batch())
    extra = {"loss/value"} if cls is SACv1 else set()
    assert set(auto) == DESIGN_METRICS | extra | {"loss/alpha"}
    assert set(fixed) == DESIGN_METRICS | extra


@pytest.mark.parametrize("cls", [SAC, SACv1])
def test_fixed_temperature_stays_fixed(cls) -> None:
    agent = make_agent(cls, TemperatureMode.fixed, alpha=0.2)
    assert not agent.temperature.log_alpha.requires_grad
    assert "temperature" not in agent.param_groups()
    for seed in range(3):
        metrics = update(agent, make_batch(seed=seed))
        assert "loss/alpha" not in metrics
    torch.testing.assert_close(agent.temperature.alpha, torch.tensor(0.2, dtype=torch.float64))
    torch.testing.assert_close(metrics["alpha"], torch.tensor(0.2, dtype=torch.float64))


@pytest.mark.parametrize("cls", [SAC, SACv1])
def test_learned_temperature_drives_entropy_toward_target(cls) -> None:
    # A tanh-squashed policy on [-1, 1]^2 has entropy at most 2 log 2 < 10: alpha must rise
    # to ask for more entropy. A target of -50 is far below it: alpha must fall.
    for target_entropy, direction in [(10.0, 1.0), (-50.0, -1.0)]:
        agent = make_agent(cls, TemperatureMode.auto, alpha=1.0, target_entropy=target_entropy)
        assert agent.temperature.target_entropy == target_entropy
        alphas = [agent.temperature.alpha.item()]
        for seed in range(3):
            metrics = update(agent, make_batch(seed=seed, size=64))
            assert metrics["policy/entropy"] < 10.0 and metrics["policy/entropy"] > -50.0
            alphas.append(agent.temperature.alpha.item())
        steps = torch.diff(torch.tensor(alphas)) * direction
        assert (steps > 0).all(), (target_entropy, alphas)


def test_default_target_entropy_is_minus_action_dimension() -> None:
    agent = make_agent(SAC, TemperatureMode.auto)
    assert agent.temperature.target_entropy == -float(ACT_DIM)
