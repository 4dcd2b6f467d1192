"""Typed schemas for every config group, registered in Hydra's ConfigStore: the one place
where defaults are written (the YAML files under conf/ state only what their option sets
beyond them).

The primary config (`conf/train.yaml`) extends `train_schema`, so Hydra rejects a mistyped
key or a value of the wrong type while composing. An agent whose keys go beyond the shared
schema declares them in AGENT_SCHEMAS (group -> dataclass); its conf/agent file selects them
(`/schema/<group>@<group>: <agent>`), so that `optimizer.value_lr` exists with agent=sac_v1
and is a mistyped key with agent=sac. `validate` then checks what types cannot express
(signs, ranges, relations between keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from sac_cli.errors import UserError


class AgentName(str, Enum):
    sac = "sac"  # 2018b: twin Q, target Q networks, temperature
    sac_v1 = "sac_v1"  # 2018a: V_psi and its target, two Q networks (eqs. 5-9)


class TemperatureMode(str, Enum):
    auto = "auto"  # learned log-alpha toward a target entropy
    fixed = "fixed"


class Activation(str, Enum):
    relu = "relu"
    tanh = "tanh"
    elu = "elu"
    gelu = "gelu"
    silu = "silu"


class LoggerMode(str, Enum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


@dataclass
class EnvConfig:
    # Set by the env file (conf/env/) or env.id=<id>; no default task here.
    id: str = MISSING
    # Reward scale of SAC 2018a (its appendix D); agent=sac_v1 uses it, agent=sac does not.
    reward_scale: float = 5.0
    # Standardise observations by a running mean and variance of those collected (frozen in
    # evaluation; saved in checkpoints; applied by sac-eval and sac-export).
    normalize_obs: bool = False


@dataclass
class AgentConfig:
    name: AgentName = AgentName.sac
    batch_size: int = 256
    gamma: float = 0.99
    tau: float = 0.005
    buffer_size: int = 1_000_000
    updates_per_step: int = 1
    target_update_interval: int = 1
    n_critics: int = 2
    reward_scale: float = 1.0


@dataclass
class TemperatureConfig:
    mode: TemperatureMode = TemperatureMode.auto
    # The fixed alpha, or the initial alpha when it is learned.
    alpha: float = 1.0
    # null: -dim(A), the 2018b heuristic.
    target_entropy: float | None = None


@dataclass
class NetworkConfig:
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    activation: Activation = Activation.relu
    log_std_min: float = -20.0
    log_std_max: float = 2.0


@dataclass
class OptimizerConfig:
    # Adam with lr 1e-3 for every network and for log-alpha, as the SAC baseline of the CrossQ
    # code base (on SBX) whose curves SimbaV2 reports, and Tianshou's for the networks: chosen
    # by measurement over the papers' 3e-4 (README, Learning quality); experiment=sac_2018b
    # keeps 3e-4.
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    alpha_lr: float = 1e-3


@dataclass
class SACv1OptimizerConfig(OptimizerConfig):
    # SAC 2018a keeps its paper's 3e-4 (appendix D, table 1): 1e-3 was measured with
    # agent=sac only.
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    # The state-value network V_psi of SAC 2018a (eqs. 5-6).
    value_lr: float = 3e-4


@dataclass
class EvalConfig:
    every: int = 5_000
    episodes: int = 10
    # Record an MP4 of the first evaluation episode at each evaluation (videos/, and W&B).
    video: bool = False
    # An evaluation episode of an environment without a time limit of its own ends here.
    max_episode_steps: int = 1_000


@dataclass
class CheckpointConfig:
    every: int = 10_000


@dataclass
class LoggerConfig:
    mode: LoggerMode = LoggerMode.offline
    project: str = "sac-cli"
    group: str | None = None
    name: str | None = None
    # Environment steps between two logged rows of losses and perf/sps.
    every: int = 1_000
    # Also write TensorBoard event files under <run dir>/tensorboard/ (the same metrics).
    tensorboard: bool = False


@dataclass
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    temperature: TemperatureConfig = field(default_factory=TemperatureConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    device: str = "auto"
    total_steps: int = 1_000_000
    # Uniform-random environment steps before the first update (each env file states its own).
    learning_starts: int = 5_000
    # torch intra-op threads; null lets sac-cli choose (on CPU: 1, and the critic and policy
    # branches in two threads when two cores are free).
    threads: int | None = None
    # torch.compile the update (plus CUDA graphs on CUDA): true, false, or auto (on CPU, for
    # runs of 100k updates or more where a C++ compiler is found; training/compilation.py).
    # Any: a bool or the string "auto" (OmegaConf 2.3 has no unions); validate() checks it.
    compile: Any = "auto"


# Each agent's schema beyond the shared one: config group -> its dataclass.
AGENT_SCHEMAS: dict[AgentName, dict[str, type]] = {
    AgentName.sac_v1: {"optimizer": SACv1OptimizerConfig},
}


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for agent, groups in AGENT_SCHEMAS.items():
        for group, node in groups.items():
            store.store(group=f"schema/{group}", name=agent.value, node=node)


def schema_of(config: Any) -> DictConfig:
    """The schema that a saved config (a checkpoint's, a dict) is checked against:
    TrainConfig with its agent's own groups."""
    agent = config.get("agent") if isinstance(config, dict) else None
    name = agent.get("name") if isinstance(agent, dict) else None
    schema = OmegaConf.structured(TrainConfig)
    own = next((groups for a, groups in AGENT_SCHEMAS.items() if a.value == name), {})
    for group, node in own.items():
        schema = OmegaConf.merge(schema, {group: OmegaConf.structured(node)})
    return schema


def upgrade_saved_config(config: Any) -> Any:
    """A saved config (a checkpoint's) as this version composes it: checkpoints of sac-cli
    <= 0.1 gave agent=sac an `optimizer.value_lr`, which it never used."""
    agent = config.get("agent") if isinstance(config, dict) else None
    optimizer = config.get("optimizer") if isinstance(config, dict) else None
    if not (isinstance(agent, dict) and isinstance(optimizer, dict)):
        return config
    if agent.get("name") == AgentName.sac.value and "value_lr" in optimizer:
        optimizer = {k: v for k, v in optimizer.items() if k != "value_lr"}
        return {**config, "optimizer": optimizer}
    return config


def validate(cfg: TrainConfig) -> None:
    """Reject values that have the right type but no meaning, one clear message each."""
    positive = {
        "total_steps": cfg.total_steps,
        "agent.batch_size": cfg.agent.batch_size,
        "agent.buffer_size": cfg.agent.buffer_size,
        "agent.updates_per_step": cfg.agent.updates_per_step,
        "agent.target_update_interval": cfg.agent.target_update_interval,
        "agent.n_critics": cfg.agent.n_critics,
        "agent.reward_scale": cfg.agent.reward_scale,
        "optimizer.actor_lr": cfg.optimizer.actor_lr,
        "optimizer.critic_lr": cfg.optimizer.critic_lr,
        **(
            {"optimizer.value_lr": cfg.optimizer.value_lr}
            if isinstance(cfg.optimizer, SACv1OptimizerConfig)
            else {}
        ),
        "optimizer.alpha_lr": cfg.optimizer.alpha_lr,
        "temperature.alpha": cfg.temperature.alpha,
        "eval.every": cfg.eval.every,
        "eval.max_episode_steps": cfg.eval.max_episode_steps,
        "checkpoint.every": cfg.checkpoint.every,
        "logger.every": cfg.logger.every,
    }
    for key, value in positive.items():
        if not value > 0:
            raise UserError(f"{key}={value} must be positive: pass {key}=<a number > 0>")
    non_negative = {
        "seed": cfg.seed,
        "learning_starts": cfg.learning_starts,
        "eval.episodes": cfg.eval.episodes,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise UserError(f"{key}={value} must be zero or more")
    if not 0.0 <= cfg.agent.gamma < 1.0:
        raise UserError(f"agent.gamma={cfg.agent.gamma} must lie in [0, 1)")
    if not 0.0 < cfg.agent.tau <= 1.0:
        raise UserError(f"agent.tau={cfg.agent.tau} must lie in (0, 1]")
    if cfg.agent.buffer_size < 2:
        raise UserError(f"agent.buffer_size={cfg.agent.buffer_size} must be at least 2")
    if cfg.agent.batch_size > cfg.agent.buffer_size:
        raise UserError(
            f"agent.batch_size={cfg.agent.batch_size} is larger than the replay buffer "
            f"(agent.buffer_size={cfg.agent.buffer_size}): lower the batch or raise the buffer"
        )
    if not cfg.network.hidden_sizes or min(cfg.network.hidden_sizes) <= 0:
        raise UserError(
            f"network.hidden_sizes={list(cfg.network.hidden_sizes)} needs at least one "
            "layer and positive sizes, e.g. network.hidden_sizes=[256,256]"
        )
    if cfg.network.log_std_min >= cfg.network.log_std_max:
        raise UserError("network.log_std_min must be below network.log_std_max")
    if cfg.threads is not None and cfg.threads <= 0:
        raise UserError(f"threads={cfg.threads} must be positive (or null to choose automatically)")
    if not (isinstance(cfg.compile, bool) or cfg.compile == "auto"):
        raise UserError(f"compile={cfg.compile} is not one of auto, true, false")
