"""Every option of every config group composes into a valid schema; typos fail by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from sac_cli.config import (
    SACv1OptimizerConfig,
    TrainConfig,
    schema_of,
    upgrade_saved_config,
    validate,
)
from sac_cli.errors import UserError
from sac_cli.training.run_dir import check_resumable

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")
OPTIONS = [(group, f.stem) for group in GROUPS for f in sorted((CONF / group).glob("*.yaml"))]



def compose_train(overrides: list[str]) -> TrainConfig:
    with initialize_config_module(config_module="sac_cli.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def test_every_group_has_options():
    assert {"env", "agent", "temperature", "network", "optimizer"} <= set(GROUPS)
    assert len(OPTIONS) >= 17


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes(group: str, option: str):
    # env=generic is for any id without a file of its own: it needs env.id, and says so.
    generic = (group, option) == ("env", "generic")
    if generic:
        with pytest.raises(MissingMandatoryValue, match="env.id"):
            compose_train(["env=generic"])
    cfg = compose_train([f"{group}={option}", *(["env.id=Pendulum-v1"] if generic else [])])
    assert isinstance(cfg, TrainConfig)
    validate(cfg)
    if group == "env":
        assert cfg.env.id == ("Pendulum-v1" if generic else option)


def test_defaults_are_the_2018b_paper_but_for_learning_rates_and_random_steps():
    cfg = compose_train([])
    assert cfg.env.id == "HalfCheetah-v4"
    assert cfg.agent.name.value == "sac"
    assert cfg.temperature.mode.value == "auto" and cfg.temperature.target_entropy is None
    assert list(cfg.network.hidden_sizes) == [256, 256]
    assert (cfg.agent.batch_size, cfg.agent.gamma, cfg.agent.tau) == (256, 0.99, 0.005)
    assert cfg.agent.reward_scale == 1.0
    # Chosen by measurement (README, Learning quality): the paper's 3e-4 and 10k otherwise.
    assert cfg.optimizer.actor_lr == cfg.optimizer.critic_lr == cfg.optimizer.alpha_lr == 1e-3
    assert cfg.learning_starts == 5_000


@pytest.mark.parametrize("env", ["HalfCheetah-v4", "Hopper-v5", "Humanoid-v4", "Pendulum-v1"])
def test_sac_v1_keeps_its_papers_learning_rates(env: str):
    cfg = compose_train(["agent=sac_v1", f"env={env}"])
    optimizer = cfg.optimizer
    assert optimizer.actor_lr == optimizer.critic_lr == optimizer.alpha_lr == 3e-4
    assert optimizer.value_lr == 3e-4


def test_sac_v1_uses_fixed_temperature_and_the_env_reward_scale():
    cfg = compose_train(["agent=sac_v1", "env=Humanoid-v4"])
    assert cfg.temperature.mode.value == "fixed" and cfg.temperature.alpha == 1.0
    assert cfg.agent.reward_scale == 20.0
    learned = compose_train(["agent=sac_v1", "temperature=auto"])
    assert learned.temperature.mode.value == "auto"


def test_env_id_override_reaches_any_task():
    cfg = compose_train(["env.id=MountainCarContinuous-v0"])
    assert cfg.env.id == "MountainCarContinuous-v0"


def test_contract_keys_are_overridable():
    cfg = compose_train(
        [
            "temperature=fixed",
            "temperature.alpha=0.1",
            "network.hidden_sizes=[64,32]",
            "optimizer.actor_lr=1e-3",
            "optimizer.critic_lr=2e-3",
            "agent.batch_size=128",
            "agent.gamma=0.98",
            "agent.tau=0.01",
            "seed=7",
            "device=cpu",
            "total_steps=1234",
            "learning_starts=10",
            "eval.every=100",
            "eval.episodes=3",
            "checkpoint.every=50",
            "logger.mode=disabled",
        ]
    )
    assert cfg.temperature.alpha == 0.1 and list(cfg.network.hidden_sizes) == [64, 32]
    assert (cfg.optimizer.actor_lr, cfg.optimizer.critic_lr) == (1e-3, 2e-3)
    assert (cfg.agent.batch_size, cfg.agent.gamma, cfg.agent.tau, cfg.seed) == (128, 0.98, 0.01, 7)
    assert (cfg.total_steps, cfg.learning_starts, cfg.eval.every, cfg.eval.episodes) == (
        1234,
        10,
        100,
        3,
    )
    assert cfg.checkpoint.every == 50 and cfg.logger.mode.value == "disabled"


def test_schema_rejects_a_typo_with_the_key_name():
    with pytest.raises(ConfigCompositionException) as error:
        compose_train(["agent.batchsize=64"])
    assert "agent.batchsize" in str(error.value)


def test_schema_rejects_a_wrong_type():
    with pytest.raises(ConfigCompositionException) as error:
        compose_train(["total_steps=many"])
    assert "total_steps" in str(error.value) or "total_steps" in str(error.value.__cause__)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("total_steps=-5", "total_steps"),
        ("optimizer.critic_lr=-0.001", "optimizer.critic_lr"),
        ("agent.batch_size=512", "agent.batch_size"),
        ("agent.gamma=1.5", "agent.gamma"),
        ("learning_starts=-1", "learning_starts"),
    ],
)
def test_validate_names_the_bad_value(override: str, named: str):
    overrides = [override] + (["agent.buffer_size=256"] if "batch_size" in override else [])
    with pytest.raises(UserError) as error:
        validate(compose_train(overrides))
    assert named in str(error.value)



def test_each_agent_composes_against_its_own_schema():
    """optimizer.value_lr (V_psi's) exists with agent=sac_v1 only; with agent=sac it is a
    mistyped key, refused by name while composing."""
    v1 = compose_train(["agent=sac_v1", "optimizer.value_lr=0.001"])
    assert isinstance(v1.optimizer, SACv1OptimizerConfig) and v1.optimizer.value_lr == 0.001
    sac = compose_train([])
    assert not hasattr(sac.optimizer, "value_lr")
    with pytest.raises(ConfigCompositionException) as error:
        compose_train(["optimizer.value_lr=0.001"])
    assert "value_lr" in str(error.value.__cause__)
    with pytest.raises(UserError, match="optimizer.value_lr=0"):
        validate(compose_train(["agent=sac_v1", "optimizer.value_lr=0"]))


def test_a_saved_config_is_checked_against_its_agents_schema():
    v1 = OmegaConf.to_container(OmegaConf.structured(compose_train(["agent=sac_v1"])),
                                enum_to_str=True)
    cfg = OmegaConf.to_object(OmegaConf.merge(schema_of(v1), v1))
    assert cfg.optimizer.value_lr == 3e-4
    assert "value_lr" not in schema_of({"agent": {"name": "sac"}}).optimizer
    assert OmegaConf.is_config(schema_of("not a config"))  # damaged: the shared schema


def test_checkpoints_of_sac_cli_0_1_keep_resuming():
    """Before per-agent schemas, agent=sac saved an unused optimizer.value_lr: dropped on
    load, so that such a run still resumes with the same command (and sac_v1's stays)."""
    sac = OmegaConf.to_container(OmegaConf.structured(compose_train([])), enum_to_str=True)
    old = {**sac, "optimizer": {**sac["optimizer"], "value_lr": 3e-4}}
    assert upgrade_saved_config(old) == sac
    check_resumable(old, sac, Path("last.pt"))
    v1 = OmegaConf.to_container(OmegaConf.structured(compose_train(["agent=sac_v1"])),
                                enum_to_str=True)
    assert upgrade_saved_config(v1) == v1
    assert upgrade_saved_config(["damaged"]) == ["damaged"]
    with pytest.raises(UserError, match="optimizer.value_lr"):
        check_resumable(v1, {**v1, "optimizer": {**v1["optimizer"], "value_lr": 1e-3}},
                        Path("last.pt"))


def test_a_refused_resume_names_every_changed_setting():
    """After an upgrade that moved defaults, a run resumes once each old value is passed:
    the one line names them all, not the first few."""
    sac = OmegaConf.to_container(OmegaConf.structured(compose_train([])), enum_to_str=True)
    old = {**sac, "learning_starts": 7, "seed": 9,
           "optimizer": {"actor_lr": 0.1, "critic_lr": 0.2, "alpha_lr": 0.3}}
    with pytest.raises(UserError) as error:
        check_resumable(old, sac, Path("last.pt"))
    for named in ("learning_starts=7", "optimizer.actor_lr=0.1", "optimizer.critic_lr=0.2",
                  "optimizer.alpha_lr=0.3", "seed=9"):
        assert named in str(error.value)
