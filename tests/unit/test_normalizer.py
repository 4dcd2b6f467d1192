"""Observation normalisation: the running statistics equal those of all the data at once,
whatever the batches; only collection updates them; they reach the networks and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from sac_cli.agents.normalizer import CLIP, ObservationNormalizer
from sac_cli.config import schema_of
from sac_cli.training.builders import build_parts, build_trainer
from sac_cli.types import Batch


@pytest.mark.parametrize("splits", [[500], [1] * 20 + [480], [7, 93, 250, 150]])
def test_running_statistics_equal_those_of_all_the_data(splits: list[int]):
    rng = np.random.default_rng(0)
    data = rng.normal(loc=[3.0, -200.0, 0.0], scale=[0.1, 50.0, 1e3], size=(sum(splits), 3))
    norm = ObservationNormalizer(3)
    start = 0
    for n in splits:
        norm.update(torch.as_tensor(data[start:start + n], dtype=torch.float32))
        start += n
    as_float32 = data.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(norm.mean.numpy(), as_float32.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(norm.var.numpy(), as_float32.var(axis=0), rtol=1e-9)
    assert float(norm.count) == len(data)


def test_forward_standardises_and_clips():
    norm = ObservationNormalizer(2)
    norm.update(torch.tensor([[0.0, 10.0], [2.0, 30.0]]))  # mean (1, 20), std (1, 10)
    out = norm(torch.tensor([[1.0, 40.0], [3.0, 1e6]]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 2.0], [2.0, CLIP]]), rtol=1e-6, atol=1e-6)
    assert out.dtype == torch.float32


def test_only_collection_updates_the_statistics_and_the_networks_see_them(tmp_path):
    """300 collected steps, two evaluations of a 200-step episode: 300 observations counted.
    The batch the update engine hands the losses is standardised."""
    overrides = {"env": {"id": "Pendulum-v1", "normalize_obs": True},
                 "network": {"hidden_sizes": [16]}, "agent": {"batch_size": 32,
                 "buffer_size": 1000}, "total_steps": 300, "learning_starts": 100,
                 "eval": {"every": 150, "episodes": 1}, "logger": {"mode": "disabled"},
                 "threads": 1}  # fmt: skip
    config = OmegaConf.merge(schema_of(overrides), overrides)
    cfg = OmegaConf.to_object(config)
    parts = build_parts(cfg, torch.device("cpu"))
    trainer = build_trainer(cfg, tmp_path, parts, OmegaConf.to_container(config, enum_to_str=True))
    trainer.run()
    norm = parts.agent.obs_normalizer
    assert float(norm.count) == 300
    raw = parts.buffer.sample(64)
    seen = parts.agent.normalized(raw)
    torch.testing.assert_close(seen.obs, norm(raw.obs))
    assert abs(float(seen.obs.mean())) < 1.0 < float(raw.obs.abs().max())
    saved = torch.load(tmp_path / "checkpoints" / "final.pt", weights_only=True)["agent"]
    assert torch.equal(saved["obs_normalizer.mean"], norm.mean)


def test_without_normalisation_nothing_changes():
    norm_free = Batch(*(torch.randn(4, 3) for _ in range(5)))
    from sac_cli.agents.sac import SAC
    from sac_cli.config import AgentConfig, NetworkConfig, OptimizerConfig, TemperatureConfig

    agent = SAC(3, 1, AgentConfig(), NetworkConfig(hidden_sizes=[8]), OptimizerConfig(),
                TemperatureConfig())
    assert agent.obs_normalizer is None and agent.normalized(norm_free) is norm_free
    assert not any(k.startswith("obs_normalizer") for k in agent.state_dict())
