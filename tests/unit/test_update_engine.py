"""The update engine runs what an agent declares: schedules that the SAC family needs (a
delayed policy, targets averaged every k steps, several critic steps per environment step,
no target networks at all), with the agent knowing nothing of how."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers.updates import engine_of, random_batch, tiny_sac

from sac_cli.agents.base import Schedule
from sac_cli.agents.sac import SAC
from sac_cli.config import (
    AgentConfig,
    NetworkConfig,
    OptimizerConfig,
    TemperatureConfig,
    TemperatureMode,
)
from sac_cli.training.replay import Batch

OBS_DIM, ACT_DIM, BATCH = 4, 2, 16


def make_sac(**agent_cfg) -> SAC:
    return tiny_sac(OBS_DIM, ACT_DIM, **agent_cfg)


def batch(seed: int) -> Batch:
    return random_batch(seed, OBS_DIM, ACT_DIM, BATCH)


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(module: torch.nn.Module, before: list[torch.Tensor]) -> bool:
    return all(torch.equal(p, q) for p, q in zip(module.parameters(), before, strict=True))


def test_a_delayed_policy_steps_only_every_k_critic_steps() -> None:
    agent = make_sac()
    agent.schedule = dataclasses.replace(agent.schedule, policy_every=3)
    engine = engine_of(agent)
    seen = []
    for step in range(4):
        actor, critic = snapshot(agent.actor), snapshot(agent.critic)
        metrics = engine.update(batch(step))
        seen.append("loss/actor" in metrics)
        assert not same(agent.critic, critic)  # the critic steps every time
        assert same(agent.actor, actor) is ("loss/actor" not in metrics)
    assert seen == [True, False, False, True]
    # The idle branch's Adam state did not move either: its step count is its own.
    adam = engine.optimizers["networks"].state
    assert adam[next(agent.actor.parameters())]["step"] == 2
    assert adam[next(agent.critic.parameters())]["step"] == 4


def test_targets_average_every_k_steps_and_critic_steps_come_from_the_config() -> None:
    agent = make_sac(target_update_interval=2, updates_per_step=20)
    assert agent.schedule == Schedule(critic_steps=20, policy_every=1, target_every=2)
    engine = engine_of(agent)
    target = snapshot(agent.critic_target)
    engine.update(batch(0))
    assert same(agent.critic_target, target)
    engine.update(batch(1))
    assert not same(agent.critic_target, target)


class NoTargetSAC(SAC):
    """SAC bootstrapping from its online critic: an agent with no target pairs (as CrossQ)."""

    def target_pairs(self):
        return []


def test_an_agent_without_target_networks_updates() -> None:
    torch.manual_seed(0)
    agent = NoTargetSAC(OBS_DIM, ACT_DIM, AgentConfig(), NetworkConfig(hidden_sizes=[8]),
                        OptimizerConfig(), TemperatureConfig())  # fmt: skip
    target = snapshot(agent.critic_target)
    metrics = engine_of(agent).update(batch(0))
    assert torch.isfinite(metrics["loss/critic"])
    assert same(agent.critic_target, target)  # nothing averaged into it


def test_a_metric_is_averaged_over_the_updates_that_report_it() -> None:
    from sac_cli.training.logger import MetricAccumulator

    metrics = MetricAccumulator()
    metrics.add({"loss/critic": torch.tensor(1.0), "loss/actor": torch.tensor(4.0)})
    metrics.add({"loss/critic": torch.tensor(3.0)})  # the policy did not step this update
    assert metrics.count == 2
    assert metrics.pop_means() == {"loss/critic": 2.0, "loss/actor": 4.0}


class FailingSAC(SAC):
    """SAC whose `failing` branch raises on demand."""

    failing: str | None = None

    def critic_losses(self, batch, *noise):
        if self.failing == "critic":
            raise FloatingPointError("critic")
        return super().critic_losses(batch, *noise)

    def policy_losses(self, batch, *noise):
        if self.failing == "policy":
            raise FloatingPointError("policy")
        return super().policy_losses(batch, *noise)


@pytest.mark.parametrize("branch", ["critic", "policy"])
def test_an_error_in_one_branch_thread_steps_nothing_and_reaches_the_caller(branch) -> None:
    torch.manual_seed(0)
    agent = FailingSAC(OBS_DIM, ACT_DIM, AgentConfig(), NetworkConfig(hidden_sizes=[8]),
                       OptimizerConfig(), TemperatureConfig(mode=TemperatureMode.auto))  # fmt: skip
    engine = engine_of(agent, branch_threads=True)
    with engine.overlapping():
        engine.update(batch(0))
        engine.finish()
        before = snapshot(agent)
        agent.failing = branch
        with pytest.raises(FloatingPointError, match=branch):
            engine.update(batch(1))
            engine.finish()  # the critic's error may come with the update in flight
        assert same(agent, before)  # neither branch stepped
        agent.failing = None
        engine.update(batch(2))  # nothing left waiting: the next update runs
        engine.finish()
    assert not same(agent, before)


def test_an_agent_must_split_its_parameters_between_the_branches() -> None:
    agent = make_sac()
    agent.branch_parameters = lambda: {"critic": list(agent.critic.parameters()), "policy": []}
    with pytest.raises(ValueError, match="branch_parameters"):
        engine_of(agent)
