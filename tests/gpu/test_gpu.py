"""Checks on a CUDA GPU (`make gpu-check`); every test here skips on a machine without one.

The CUDA update equals the CPU update to float tolerance, compiled (with CUDA graphs) equals
eager, a short HalfCheetah run trains with device=cuda compile=true, and its checkpoint,
written on the GPU, resumes on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.cli import read_metrics, run_cli

from sac_cli.agents.registry import build_agent
from sac_cli.config import AgentConfig, NetworkConfig, TrainConfig
from sac_cli.training.replay import ReplayBuffer
from sac_cli.training.update import UpdateEngine

pytestmark = pytest.mark.gpu

OBS_DIM, ACT_DIM = 17, 6


def engine(device: str, compile: bool = False) -> UpdateEngine:
    torch.manual_seed(0)
    cfg = TrainConfig(agent=AgentConfig(batch_size=256), network=NetworkConfig(), compile=compile)
    agent = build_agent(cfg, OBS_DIM, ACT_DIM, torch.device(device))
    return UpdateEngine(agent, torch.device(device), branch_threads=False, compile=compile)


def batches(n: int = 5):
    """CPU batches of a buffer of random transitions (episodes of 100 steps)."""
    buffer = ReplayBuffer(2000, OBS_DIM, ACT_DIM, "cpu", seed=0)
    g = torch.Generator().manual_seed(0)
    for t in range(1500):
        buffer.add(torch.randn(OBS_DIM, generator=g).numpy(), torch.rand(ACT_DIM, generator=g),
                   float(torch.randn(1, generator=g)), torch.randn(OBS_DIM, generator=g).numpy(),
                   t % 100 == 99, False)  # fmt: skip
    return [buffer.sample(256) for _ in range(n)]


def to_cuda(batch):
    return type(batch)(*(t.cuda() for t in batch))


def test_the_cuda_update_equals_the_cpu_update() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False  # full float32 products, as on the CPU
    cpu, cuda = engine("cpu"), engine("cuda")
    cuda.agent.load_state_dict(cpu.agent.state_dict())
    for batch in batches():
        noise = cpu.noise(256)  # the same draws on both devices
        a = cpu.update(batch, noise)
        b = cuda.update(to_cuda(batch), [eps.cuda() for eps in noise])
        for key in a:
            torch.testing.assert_close(b[key].cpu(), a[key], rtol=1e-4, atol=1e-4, msg=key)
    for key, value in cpu.agent.state_dict().items():
        torch.testing.assert_close(cuda.agent.state_dict()[key].cpu(), value, rtol=1e-4,
                                   atol=1e-5, msg=key)  # fmt: skip


def test_compiled_with_cuda_graphs_equals_eager_on_cuda() -> None:
    eager, compiled = engine("cuda"), engine("cuda", compile=True)
    assert compiled.cuda_graphs and not compiled.branch_threads
    for batch in map(to_cuda, batches()):
        noise = eager.noise(256)
        a = eager.update(batch, noise)
        b = compiled.update(batch, [eps.clone() for eps in noise])
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-4, msg=key)


def test_a_short_halfcheetah_run_on_cuda_resumes_on_the_cpu(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    common = ["env=HalfCheetah-v4", "learning_starts=200", "eval.every=400", "eval.episodes=1",
              "checkpoint.every=100", "logger.mode=disabled",
              f"hydra.run.dir={run_dir}"]  # fmt: skip
    first = run_cli("sac-train", *common, "total_steps=1000", "device=cuda", "compile=true",
                    cwd=tmp_path, timeout=600)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "on cuda" in first.stderr
    more = run_cli("sac-train", *common, "total_steps=1400", "device=cpu", cwd=tmp_path,
                   timeout=600)  # fmt: skip
    assert more.returncode == 0, more.stderr
    assert "resuming from" in more.stderr
    evals = [r["step"] for r in read_metrics(run_dir) if "eval/return_mean" in r]
    assert evals == [400, 800, 1000, 1200, 1400]
