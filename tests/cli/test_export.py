"""sac-export: the ONNX file run by onnxruntime and the TorchScript file run by torch give the
checkpoint's deterministic policy, in the environment's bounds, for any batch size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from helpers.cli import TINY, read_metrics, run_cli

from sac_cli.cli.loading import load_policy
from sac_cli.envs.make import make_env
from sac_cli.training import checkpoint as ckpt


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    result = run_cli("sac-train", *TINY, "total_steps=400", "logger.mode=disabled",
                     f"hydra.run.dir={folder / 'run'}", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "run"


def expected_actions(run_dir: Path, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the checkpoint's agent does in the environment: its deterministic action in
    [-1, 1], through the training environment's own rescaling to Pendulum's [-2, 2]."""
    path = run_dir / "checkpoints" / "last.pt"
    state = ckpt.load(path, map_location=torch.device("cpu"))
    env = make_env("Pendulum-v1")
    agent = load_policy(state, path, env, torch.device("cpu"), "Pendulum-v1")
    squashed = np.stack([agent.act(o, deterministic=True) for o in obs])
    actions = np.stack([env.unwrapped.action_space.low + (env.unwrapped.action_space.high
                        - env.unwrapped.action_space.low) * (a + 1) / 2 for a in squashed])
    env.close()
    return actions.astype(np.float32), squashed


OBS = np.random.default_rng(0).uniform(-3, 3, size=(7, 3)).astype(np.float32)


def test_onnx_in_onnxruntime_is_the_checkpoints_policy(run_dir: Path, tmp_path: Path):
    result = run_cli("sac-export", f"checkpoint={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    onnx_file = run_dir / "export" / "policy-last-step-400.onnx"
    assert f"wrote {onnx_file}" in result.stdout
    session = onnxruntime.InferenceSession(str(onnx_file))
    want, squashed = expected_actions(run_dir, OBS)
    # Pendulum's [-2, 2]; atol because low + (high - low) * (a + 1) / 2 rounds near 0 (float32)
    np.testing.assert_allclose(want, 2 * squashed, rtol=1e-6, atol=1e-6)
    for batch in (OBS, OBS[:1]):  # any batch size
        (got,) = session.run(["action"], {"obs": batch})
        np.testing.assert_allclose(got, want[: len(batch)], rtol=1e-5, atol=1e-5)
    spaces = json.loads((onnx_file.parent / f"{onnx_file.name}.json").read_text())
    assert spaces["input"] == {"name": "obs", "shape": ["batch", 3], "dtype": "float32"}
    assert (spaces["output"]["low"], spaces["output"]["high"]) == ([-2.0], [2.0])
    assert (spaces["step"], spaces["env_id"], spaces["format"]) == (400, "Pendulum-v1", "onnx")


def test_torchscript_elsewhere_with_out(run_dir: Path, tmp_path: Path):
    out = tmp_path / "shipped"
    last = run_dir / "checkpoints" / "last.pt"
    result = run_cli("sac-export", f"checkpoint={last}", "format=torchscript", f"out={out}",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    module = torch.jit.load(str(out / "policy-last-step-400.pt"))
    got = module(torch.from_numpy(OBS)).numpy()
    np.testing.assert_allclose(got, expected_actions(run_dir, OBS)[0], rtol=1e-5, atol=1e-5)
    assert json.loads((out / "policy-last-step-400.pt.json").read_text())["format"] == (
        "torchscript")


@pytest.mark.parametrize(("args", "message"), [
    (["format=tflite"], "format"),
    ([], "no checkpoint given: pass checkpoint="),
    (["checkpoint=/nonexistent/run"], "/nonexistent/run"),
    # A sweep's run directory, unquoted for Hydra: how to quote it.
    (["checkpoint=sweep/env=Pendulum-v1,seed=0"],
     """e.g. checkpoint="'sweep/env=Pendulum-v1,seed=0'" in the shell"""),
])  # fmt: skip
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str):
    result = run_cli("sac-export", *args, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sac-export: error:") and message in lines[0]


def test_an_unwritable_out_is_one_line_and_writes_nothing(run_dir: Path, tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    before = sorted(p.name for p in run_dir.rglob("*"))
    result = run_cli("sac-export", f"checkpoint={run_dir}", f"out={blocker / 'x'}", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "cannot write to" in result.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in run_dir.rglob("*")) == before


def test_normalised_observations_reach_sac_eval_and_the_export(tmp_path: Path):
    """env.normalize_obs=true: sac-eval replays the training's own last evaluation (same
    seeds, the frozen statistics), and the exported policy standardises as the agent does."""
    run_dir = tmp_path / "run"
    result = run_cli("sac-train", *TINY, "total_steps=400", "logger.mode=disabled",
                     "env.normalize_obs=true", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trained = [r["eval/return_mean"] for r in read_metrics(run_dir) if "eval/return_mean" in r]
    evaluated = run_cli("sac-eval", f"checkpoint={run_dir}", "episodes=1", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((run_dir / "eval-last-step-400.json").read_text())
    assert report["return_mean"] == trained[-1]

    exported = run_cli("sac-export", f"checkpoint={run_dir}", "format=torchscript", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    module = torch.jit.load(str(run_dir / "export" / "policy-last-step-400.pt"))
    obs = OBS * 20  # far from the statistics: clipping shows too
    np.testing.assert_allclose(module(torch.from_numpy(obs)).numpy(),
                               expected_actions(run_dir, obs)[0], rtol=1e-5, atol=1e-5)
