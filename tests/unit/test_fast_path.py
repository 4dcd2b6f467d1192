"""The fast update path computes what the straightforward formulas compute.

The agents evaluate every Q head in one batched matmul, take one backward pass for all losses,
step fused Adam, draw the reparameterisation noise before the losses and use in-place
activations; `compile=true` also runs the losses through torch.compile. The reference below
does none of that: one nn.Linear MLP per head, one plain Adam per network, one gradient per
loss (Haarnoja et al. 2018a eqs. 5-13; the temperature loss of 2018b, eq. 18).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from sac_cli.agents.networks import COMPILE_ACTIVATIONS, QEnsemble, TanhGaussianActor
from sac_cli.agents.registry import build_agent
from sac_cli.agents.sac_v1 import SACv1
from sac_cli.bench.ops import OpTimer, op_breakdown
from sac_cli.bench.report import per_repeat_ratio
from sac_cli.bench.runners import Result
from sac_cli.cli import bench
from sac_cli.config import (
    AgentConfig,
    AgentName,
    NetworkConfig,
    SACv1OptimizerConfig,
    TemperatureConfig,
    TemperatureMode,
    TrainConfig,
)
from sac_cli.device import keep_freed_memory, usable_cpus
from sac_cli.errors import UserError
from sac_cli.training.logger import MetricAccumulator
from sac_cli.training.replay import ReplayBuffer
from sac_cli.training.update import (
    UpdateEngine,
    branch_threads_by_default,
    default_torch_threads,
)

OBS_DIM, ACT_DIM, HIDDEN, BATCH = 5, 3, [32, 32], 64
LR = {"actor": 1e-3, "critic": 2e-3, "value": 3e-3, "alpha": 4e-3}
GAMMA, TAU, REWARD_SCALE = 0.95, 0.05, 2.0
N_UPDATES = 5


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices gain nothing from a second thread, and on a busy 2-core machine OpenMP's
    barriers make each op wait for a descheduled thread (100x slower updates)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def config(name: AgentName, mode: TemperatureMode, compile: bool = False) -> TrainConfig:
    return TrainConfig(
        agent=AgentConfig(
            name=name, batch_size=BATCH, gamma=GAMMA, tau=TAU, reward_scale=REWARD_SCALE
        ),
        network=NetworkConfig(hidden_sizes=list(HIDDEN)),
        optimizer=SACv1OptimizerConfig(  # value_lr for sac_v1; agent=sac ignores it
            actor_lr=LR["actor"], critic_lr=LR["critic"], value_lr=LR["value"], alpha_lr=LR["alpha"]
        ),
        temperature=TemperatureConfig(mode=mode, alpha=0.5),
        compile=compile,
    )


def make_engine(
    name: AgentName, mode: TemperatureMode, compile: bool = False, parallel: bool | None = None
) -> UpdateEngine:
    """An agent and the engine that runs its updates (parallel=None: the engine's default)."""
    torch.manual_seed(0)
    cfg = config(name, mode, compile)
    device = torch.device("cpu")
    return UpdateEngine(build_agent(cfg, OBS_DIM, ACT_DIM, device), device, parallel, compile)


def filled_buffer(seed: int = 0) -> ReplayBuffer:
    """Episodes of random transitions, some terminated and some truncated."""
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(1000, OBS_DIM, ACT_DIM, "cpu", seed=seed)
    obs = rng.standard_normal(OBS_DIM)
    for t in range(600):
        next_obs = rng.standard_normal(OBS_DIM)
        end = t % 4 == 3
        terminated, truncated = end and t % 8 == 3, end and t % 8 == 7
        buffer.add(obs, rng.uniform(-1, 1, ACT_DIM), rng.standard_normal(), next_obs,
                   terminated, truncated)
        obs = rng.standard_normal(OBS_DIM) if end else next_obs
    return buffer


def batches(dtype: torch.dtype, n: int = N_UPDATES):
    buffer = filled_buffer()
    out = []
    for _ in range(n):
        batch = buffer.sample(BATCH)
        assert batch.terminated.any() or n == 1
        out.append(type(batch)(*(t.to(dtype) for t in batch)))
    return out


# ------------------------------------------------------------------------------------------
# A reference written out plainly
# ------------------------------------------------------------------------------------------


def linear_mlp(weights: list[torch.Tensor], biases: list[torch.Tensor]) -> nn.Sequential:
    """nn.Linear layers with ReLU between them, holding copies of (in, out) weights."""
    layers: list[nn.Module] = []
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        linear = nn.Linear(w.shape[0], w.shape[1], dtype=w.dtype)
        with torch.no_grad():
            linear.weight.copy_(w.T)
            linear.bias.copy_(b.reshape(-1))
        layers.append(linear)
        if i < len(weights) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def q_heads(q: QEnsemble) -> list[nn.Sequential]:
    return [
        linear_mlp([w[h] for w in q.weights], [b[h] for b in q.biases]) for h in range(q.n_heads)
    ]


def plain_copy(net: nn.Sequential) -> nn.Sequential:
    """The same MLP from nn.Linear and nn.ReLU (the agents use in-place activations)."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    return linear_mlp([m.weight.detach().T for m in linears], [m.bias.detach() for m in linears])


class Reference:
    """SAC by the equations: a_pi = tanh(mu + sigma eps) (eq. 11) with its density from
    torch.distributions; the critic's, the policy's (and V's) gradients each from their own loss.
    The noise is drawn from torch's global generator in the agents' order: s' first, then s."""

    def __init__(self, agent) -> None:
        self.v1 = isinstance(agent, SACv1)
        self.actor = plain_copy(agent.actor.net)
        self.log_std_bounds = (agent.actor.log_std_min, agent.actor.log_std_max)
        self.q = q_heads(agent.critic)
        params = {"actor": list(self.actor.parameters()),
                  "critic": [p for head in self.q for p in head.parameters()]}
        if self.v1:
            self.v = plain_copy(agent.value.net)
            self.v_target = plain_copy(agent.value_target.net)
            params["value"] = list(self.v.parameters())
        else:
            self.q_target = q_heads(agent.critic_target)
        self.learned = agent.temperature.learned
        self.log_alpha = agent.temperature.log_alpha.detach().clone().requires_grad_(self.learned)
        self.target_entropy = agent.temperature.target_entropy
        if self.learned:
            params["alpha"] = [self.log_alpha]
        self.params = params
        self.optimizers = {
            k: torch.optim.Adam(p, lr=LR[k], foreach=False) for k, p in params.items()
        }

    def sample(self, obs: torch.Tensor):
        mean, log_std = self.actor(obs).chunk(2, dim=-1)
        std = log_std.clamp(*self.log_std_bounds).exp()
        u = mean + std * torch.randn(mean.shape, dtype=mean.dtype)
        dist = TransformedDistribution(Normal(mean, std), [TanhTransform(cache_size=1)])
        action = dist.transforms[0](u)
        return action, dist.log_prob(action).sum(-1)

    def min_q(self, heads, obs, action) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        return torch.stack([head(x).squeeze(-1) for head in heads]).min(dim=0).values

    def update(self, b) -> dict[str, torch.Tensor]:
        alpha = self.log_alpha.detach().exp()
        reward = REWARD_SCALE * b.rewards
        losses = {}
        if self.v1:
            action, log_prob = self.sample(b.obs)
            q_pi = self.min_q(self.q, b.obs, action)
            v_target = (q_pi - alpha * log_prob).detach()
            losses["value"] = 0.5 * ((self.v(b.obs).squeeze(-1) - v_target) ** 2).mean()  # eq. 5
            with torch.no_grad():
                target = reward + GAMMA * (1 - b.terminated) * self.v_target(b.next_obs).squeeze(-1)
        else:
            with torch.no_grad():
                next_action, next_log_prob = self.sample(b.next_obs)
                next_v = self.min_q(self.q_target, b.next_obs, next_action) - alpha * next_log_prob
                target = reward + GAMMA * (1 - b.terminated) * next_v  # eq. 8
            action, log_prob = self.sample(b.obs)
            q_pi = self.min_q(self.q, b.obs, action)
        x = torch.cat([b.obs, b.actions], dim=-1)
        q = torch.stack([head(x).squeeze(-1) for head in self.q])
        losses["critic"] = sum(0.5 * ((q[h] - target) ** 2).mean() for h in range(len(self.q)))
        losses["actor"] = (alpha * log_prob - q_pi).mean()  # eq. 12
        if self.learned:
            entropy_gap = log_prob.detach() + self.target_entropy
            losses["alpha"] = -(self.log_alpha.exp() * entropy_gap).mean()
        grads = {k: torch.autograd.grad(losses[k], self.params[k], retain_graph=True)
                 for k in self.params}
        for k, optimizer in self.optimizers.items():
            for p, g in zip(self.params[k], grads[k], strict=True):
                p.grad = g
            optimizer.step()
        with torch.no_grad():
            pairs = zip(self.v_target.parameters(), self.v.parameters(), strict=True) if self.v1 \
                else ((t, o) for th, oh in zip(self.q_target, self.q, strict=True)
                      for t, o in zip(th.parameters(), oh.parameters(), strict=True))
            for t, o in pairs:
                t.mul_(1 - TAU).add_(TAU * o)
        out = {"loss/critic": losses["critic"], "loss/actor": losses["actor"], "alpha": alpha,
               "q/mean": q.mean(), "policy/entropy": -log_prob.mean()}
        if self.v1:
            out["loss/value"] = losses["value"]
        if self.learned:
            out["loss/alpha"] = losses["alpha"]
        return {k: v.detach() for k, v in out.items()}


def check_same_networks(agent, ref: Reference, **tol) -> None:
    def close(a, b):
        torch.testing.assert_close(a.detach(), b.detach(), **tol)

    for mine, theirs in [(agent.actor.net, ref.actor)] + (
        [(agent.value.net, ref.v), (agent.value_target.net, ref.v_target)] if ref.v1 else []
    ):
        for a, b in zip(mine.parameters(), theirs.parameters(), strict=True):
            close(a, b)
    ensembles = [(agent.critic, ref.q)] + ([] if ref.v1 else [(agent.critic_target, ref.q_target)])
    for ensemble, heads in ensembles:
        for h, head in enumerate(heads):
            linears = [m for m in head if isinstance(m, nn.Linear)]
            for w, b, linear in zip(ensemble.weights, ensemble.biases, linears, strict=True):
                close(w[h], linear.weight.T)
                close(b[h, 0], linear.bias)
    close(agent.temperature.log_alpha, ref.log_alpha)


CASES = [
    (AgentName.sac, TemperatureMode.auto),
    (AgentName.sac, TemperatureMode.fixed),
    (AgentName.sac_v1, TemperatureMode.auto),
    (AgentName.sac_v1, TemperatureMode.fixed),
]


@pytest.mark.parametrize("parallel", [False, True], ids=["one-thread", "two-branches"])
@pytest.mark.parametrize(("name", "mode"), CASES)
def test_eager_fast_path_matches_the_straightforward_formulas(name, mode, parallel) -> None:
    engine = make_engine(name, mode, parallel=parallel)
    agent = engine.agent.double()
    assert engine.branch_threads is parallel
    ref = Reference(agent)
    for step, batch in enumerate(batches(torch.float64)):
        torch.manual_seed(100 + step)
        metrics = engine.update(batch)
        torch.manual_seed(100 + step)
        expected = ref.update(batch)
        assert set(metrics) == set(expected)
        for key, value in expected.items():
            torch.testing.assert_close(metrics[key], value, rtol=1e-9, atol=1e-11, msg=key)
    check_same_networks(agent, ref, rtol=1e-9, atol=1e-11)
    # Something was learned, so that the comparison says something.
    fresh = make_engine(name, mode).agent
    assert not torch.equal(agent.actor.net[0].weight, fresh.actor.net[0].weight)


@pytest.mark.parametrize(("name", "mode"), [CASES[0], CASES[2]])
def test_two_branches_give_the_one_thread_update_bit_for_bit(name, mode) -> None:
    one, two = make_engine(name, mode, parallel=False), make_engine(name, mode, parallel=True)
    for step, batch in enumerate(batches(torch.float32)):
        torch.manual_seed(step)
        a = one.update(batch)
        torch.manual_seed(step)
        b = two.update(batch)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    states = zip(one.agent.state_dict().items(), two.agent.state_dict().values(), strict=True)
    for (key, x), y in states:
        assert torch.equal(x, y), key
    adams = (one.state_dict()["networks"]["state"], two.state_dict()["networks"]["state"])
    assert adams[0].keys() == adams[1].keys()
    for index, x in adams[0].items():
        assert all(torch.equal(x[k], adams[1][index][k]) for k in x)


@pytest.mark.parametrize(("name", "mode"), [CASES[0], CASES[3]])
def test_an_overlapped_update_gives_the_one_thread_update_bit_for_bit(name, mode) -> None:
    """With overlap, update() returns while the critic's step runs on: what the trainer gets
    (its metrics once finished, the weights, Adam's state) is still the one-thread update's,
    with a delayed policy and targets averaged every other update too."""
    one, two = make_engine(name, mode, parallel=False), make_engine(name, mode, parallel=True)
    for engine in (one, two):
        engine.schedule = dataclasses.replace(engine.schedule, policy_every=2, target_every=2)
    sums = {}
    for engine in (one, two):
        metrics = MetricAccumulator()
        with engine.overlapping():
            for step, batch in enumerate(batches(torch.float32)):
                torch.manual_seed(step)
                metrics.add(engine.update(batch))
        metrics.add(engine.finish(), new_update=False)
        assert metrics.count == N_UPDATES
        sums[engine] = metrics.state_dict()
    assert sums[one]["counts"] == sums[two]["counts"]
    for key, value in sums[one]["sums"].items():
        assert torch.equal(value, sums[two]["sums"][key]), key
    assert all(p.grad is None for p in two.agent.parameters())
    states = zip(one.agent.state_dict().items(), two.agent.state_dict().values(), strict=True)
    for (key, x), y in states:
        assert torch.equal(x, y), key


def test_branches_run_in_parallel_by_default_only_with_one_torch_thread() -> None:
    two_cores = usable_cpus() >= 2
    assert make_engine(AgentName.sac, TemperatureMode.auto).branch_threads is two_cores
    assert branch_threads_by_default(torch.device("cpu"), shares_cores=True) is False  # sweeps
    torch.set_num_threads(2)  # the fixture restores it
    assert make_engine(AgentName.sac, TemperatureMode.auto).branch_threads is False


def test_sac_train_chooses_one_torch_thread_on_cpu_only() -> None:
    # One per branch on CPU (the two branches then take a core each); torch's choice elsewhere.
    assert default_torch_threads(torch.device("cpu")) == 1
    assert default_torch_threads(torch.device("cuda")) is None
    assert default_torch_threads(torch.device("mps")) is None


def test_float32_fast_path_matches_the_reference_closely() -> None:
    engine = make_engine(AgentName.sac, TemperatureMode.auto)
    ref = Reference(engine.agent)
    assert_same_float32_updates(engine, ref, rtol=1e-5, atol=1e-6)
    check_same_networks(engine.agent, ref, rtol=1e-5, atol=1e-6)


def assert_same_float32_updates(engine, expected, rtol: float, atol: float) -> None:
    """Both (engines, or the reference) take the same float32 batches with the same noise;
    their metrics agree."""
    for step, batch in enumerate(batches(torch.float32)):
        torch.manual_seed(step)
        want = expected.update(batch)
        torch.manual_seed(step)
        metrics = engine.update(batch)
        for key, value in want.items():
            torch.testing.assert_close(metrics[key], value, rtol=rtol, atol=atol, msg=key)


def test_act_draws_the_action_the_policy_defines() -> None:
    agent = make_engine(AgentName.sac, TemperatureMode.auto).agent
    obs = np.linspace(-1.0, 1.0, OBS_DIM)
    torch.manual_seed(3)
    action = agent.act(obs)
    torch.manual_seed(3)
    expected, _ = agent.actor(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))
    assert action.shape == (ACT_DIM,) and action.dtype == np.float32
    np.testing.assert_array_equal(action, expected[0].detach().numpy())
    mean = agent.actor.net(torch.as_tensor(obs, dtype=torch.float32))[:ACT_DIM]
    np.testing.assert_allclose(agent.act(obs, deterministic=True), torch.tanh(mean).detach())


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "gelu", "silu"])
def test_in_place_activations_keep_exact_gradients(activation: str) -> None:
    torch.manual_seed(0)
    q = QEnsemble(3, 2, [6, 5], activation).double()
    actor = TanhGaussianActor(3, 2, [6, 5], activation).double()
    obs = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    action = torch.rand(4, 2, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(4, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda o, a: q(o, a), (obs, action))
    assert torch.autograd.gradcheck(lambda o: actor(o, noise=eps), (obs,))


def test_compile_friendly_relu_has_relu_values_and_gradients() -> None:
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, 3.0], requires_grad=True)
    y = COMPILE_ACTIVATIONS["relu"](x * 1.0)
    y.sum().backward()
    expected = x.detach().clone().requires_grad_(True)
    torch.relu(expected).sum().backward()
    assert torch.equal(y.detach(), torch.relu(x.detach()))
    assert torch.equal(x.grad, expected.grad)


def test_allocator_keeps_freed_memory_on_linux() -> None:
    assert keep_freed_memory() is sys.platform.startswith("linux")


def test_planned_buffer_bytes_match_a_real_buffer() -> None:
    for capacity, obs_dim, act_dim in [(1000, 3, 1), (5000, 17, 6), (20_000, 376, 17)]:
        real = ReplayBuffer(capacity, obs_dim, act_dim, "cpu").bytes_per_transition
        assert ReplayBuffer.planned_bytes_per_transition(capacity, obs_dim, act_dim) == real
    # Humanoid at 1M transitions: about half of storing s' beside s.
    two_copies = 4 * (2 * 376 + 17 + 1) + 2
    assert ReplayBuffer.planned_bytes_per_transition(1_000_000, 376, 17) < 0.52 * two_copies


# ------------------------------------------------------------------------------------------
# compile=true
# ------------------------------------------------------------------------------------------


@pytest.mark.slow  # torch.compile takes 20-40 s on a 2-core CPU
@pytest.mark.parametrize(
    ("name", "mode", "parallel"), [(*CASES[0], True), (*CASES[3], False)]
)
def test_compiled_update_matches_the_eager_one(name, mode, parallel) -> None:
    eager = make_engine(name, mode, parallel=False)
    compiled = make_engine(name, mode, compile=True, parallel=parallel)
    assert compiled._both is not compiled._both_branches
    assert_same_float32_updates(compiled, eager, rtol=1e-5, atol=1e-5)
    weights = zip(compiled.agent.state_dict().values(), eager.agent.state_dict().values(),
                  strict=True)  # fmt: skip
    for a, b in weights:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    modules = compiled.agent.modules()
    assert all(m.fn is COMPILE_ACTIVATIONS["relu"] for m in modules if hasattr(m, "fn"))


# ------------------------------------------------------------------------------------------
# sac-bench
# ------------------------------------------------------------------------------------------


TINY_BENCH = ["--quick", "--env", "Pendulum-v1", "--hidden", "16", "16", "--batch-size", "32",
              "--buffer-size", "5000", "--no-compile", "--threads", "1"]


def test_bench_quick_prints_the_table_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    bench.main([*TINY_BENCH, "--json", str(out)])
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["env"] == "Pendulum-v1" and (report["obs_dim"], report["act_dim"]) == (3, 1)
    assert report["threads"] == [1] and report["device"] == "cpu"
    rows = {row["variant"]: row for row in report["results"]}
    eager = rows["eager"]
    assert eager["name"] == "sac-cli eager" and eager["threads"] == 1
    assert eager["updates_per_s"] > 0 and eager["steps_per_s"] > 0
    assert len(eager["runs"]["steps_per_s"]) == 1
    humanoid = report["memory"]["Humanoid-v4"]
    assert humanoid["bytes_per_transition"] == pytest.approx(
        ReplayBuffer.planned_bytes_per_transition(1_000_000, 376, 17)
    )
    assert "sac-cli eager" in printed and "bytes/transition" in printed
    if bench.sb3_version() is None:
        assert report["sb3"] is None and set(rows) == {"eager"}
    else:
        sb3 = rows["sb3"]
        assert sb3["name"].startswith("stable-baselines3") and sb3["steps_per_s"] > 0
        assert math.isclose(eager["steps_vs_sb3"], eager["steps_per_s"] / sb3["steps_per_s"])
        assert sb3["steps_vs_sb3"] == 1.0
    peers = [rows[p] for p in ("sb3", "sbx") if p in rows]
    if peers:  # each row against the fastest peer, by each measure
        for key, short in (("steps_per_s", "steps"), ("steps_per_cpu_s", "steps_per_cpu")):
            fastest = max(peer[key] for peer in peers)
            assert math.isclose(eager[f"{short}_vs_fastest_peer"], eager[key] / fastest)
            assert max(peer[f"{short}_vs_fastest_peer"] for peer in peers) == 1.0
    if bench.peer_version("sbx") is not None:
        sbx = rows["sbx"]
        assert sbx["name"].startswith("sbx") and sbx["updates_per_s"] > 0
        paired = report["per_repeat_ratios"]["sac-cli eager / sbx, env steps/s (1 threads)"]
        assert paired["median"] == pytest.approx(eager["steps_vs_sbx"])  # one repeat
        assert report["peers"]["sbx"] == bench.peer_version("sbx")
    else:
        assert "sbx is not installed" in printed


def test_bench_pairs_each_repeat_with_the_peer_segment_of_the_same_repeat() -> None:
    """A drift that slows every variant in one repeat cancels within the repeat: the paired
    median says 1.1x where the ratio of the medians says 0.9x."""
    ours = Result("eager", "sac-cli eager", 1, steps_per_s=[55.0, 143.0, 99.0])
    peer = Result("sbx", "sbx", 1, steps_per_s=[50.0, 130.0, 110.0])
    within = per_repeat_ratio(ours, peer, "steps_per_s")
    assert within == pytest.approx({"median": 1.1, "low": 0.9, "high": 1.1})
    assert ours.median("steps_per_s") / peer.median("steps_per_s") == pytest.approx(99 / 110)


def test_bench_without_sb3_says_so(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # as if it were not installed
    bench.main([*TINY_BENCH, "--no-sbx"])
    printed = capsys.readouterr().out
    assert "stable-baselines3 is not installed" in printed
    assert "stable-baselines3 2." not in printed


def test_bench_measures_each_thread_count(tmp_path) -> None:
    out = tmp_path / "bench.json"
    bench.main([*TINY_BENCH[:-2], "--threads", "1", "2", "--no-sb3", "--no-sbx", "--json",
                str(out)])
    report = json.loads(out.read_text())
    assert report["threads"] == [1, 2]
    assert [(r["variant"], r["threads"]) for r in report["results"]] == [("eager", 1), ("eager", 2)]
    assert torch.get_num_threads() == 1  # restored


def test_bench_ops_shows_where_each_branch_time_goes(tmp_path, capsys) -> None:
    out = tmp_path / "ops.json"
    bench.main(["--ops", "--env", "Pendulum-v1", "--hidden", "16", "16", "--batch-size", "32",
                "--buffer-size", "5000", "--learning-starts", "64", "--updates", "5", "--json",
                str(out)])
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["hidden"] == [16, 16] and report["updates"] == 5
    for name in ("critic", "policy"):
        branch = report["branches"][name]
        kinds = branch["kinds"]
        assert sum(kind["share"] for kind in kinds.values()) == pytest.approx(1.0)
        assert kinds["matrix products"]["ops"] >= 6  # three layers, forward and backward
        assert branch["wall_ms"] > 0 and report["fixed"][name] > 0
        assert branch["top"][0]["ms"] >= branch["top"][-1]["ms"]
    assert "the same branches with 8-unit hidden layers" in printed
    assert torch.get_num_threads() == 1  # restored


def test_op_timer_sorts_ops_into_kinds() -> None:
    timer = OpTimer(activation_numel=2 * 32 * 16)
    matrix, activations, small = torch.ones(4, 4), torch.ones(2, 32, 16), torch.ones(4)
    with timer:
        torch.mm(matrix, matrix)
        torch.relu(activations)
        torch.exp(small)
    assert set(timer.calls) == {
        ("mm", "matrix products"), ("relu", "activation passes"), ("exp", "small ops")
    }


def test_bench_ops_needs_the_cpu() -> None:
    settings = bench.settings_from(bench.parse_args(["--ops"]))
    with pytest.raises(UserError, match="use --device cpu"):
        op_breakdown(dataclasses.replace(settings, device=torch.device("cuda")), updates=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "sac-bench: error: --steps must be positive"),
        (
            ["--quick", "--env", "NoSuchEnv-v0", "--no-sb3", "--no-compile"],
            "sac-bench: error: unknown environment id 'NoSuchEnv-v0'",
        ),
    ],
)
def test_bench_rejects_bad_arguments(args, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(args)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(message)


def test_deepcopy_of_an_agent_still_updates() -> None:
    engine = make_engine(AgentName.sac, TemperatureMode.auto)
    twin = copy.deepcopy(engine)
    assert twin.agent is not engine.agent
    batch = batches(torch.float32, n=1)[0]
    torch.manual_seed(0)
    a = engine.update(batch)
    torch.manual_seed(0)
    b = twin.update(batch)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_actor_noise_argument_is_eps() -> None:
    actor = TanhGaussianActor(OBS_DIM, ACT_DIM, HIDDEN, "relu")
    obs = torch.randn(7, OBS_DIM)
    torch.manual_seed(5)
    drawn, drawn_log_prob = actor(obs)
    torch.manual_seed(5)
    eps = torch.randn(7, ACT_DIM)
    given, given_log_prob = actor(obs, noise=eps)
    assert torch.equal(drawn, given) and torch.equal(drawn_log_prob, given_log_prob)
