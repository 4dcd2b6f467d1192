"""logger.tensorboard=true: TensorBoard event files hold what metrics.jsonl holds, read back
with TensorBoard's own reader, one point per step after a SIGKILL and a resume."""

from __future__ import annotations

import io
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from helpers.cli import cli_env, read_metrics, run_cli
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sac_cli.training.tensorboard import TENSORBOARD_DIR, TensorBoardLog

ARGS = [
    "env=Pendulum-v1", "network.hidden_sizes=[32,32]", "learning_starts=200",
    "agent.batch_size=64", "agent.buffer_size=5000", "checkpoint.every=400", "eval.every=400",
    "eval.episodes=1", "logger.every=100", "logger.mode=disabled", "threads=1",
    "logger.tensorboard=true",
]  # fmt: skip


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance={
        "scalars": 0, "images": 0, "tensors": 0})  # fmt: skip
    accumulator.Reload()
    return accumulator


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    accumulator = events(run_dir)
    return {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def checkpoint_step(run_dir: Path) -> int | None:
    path = run_dir / "checkpoints" / "last.pt"
    return int(torch.load(path, weights_only=True)["step"]) if path.exists() else None


def test_event_files_match_metrics_jsonl_after_a_kill_and_a_resume(tmp_path: Path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "sac_cli.cli.train", *ARGS, f"hydra.run.dir={run_dir}"]
    first = subprocess.Popen([*command, "total_steps=100000"], cwd=tmp_path, env=cli_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:  # until rows newer than a checkpoint are in the event files
            step = checkpoint_step(run_dir)
            logged = [s for s, _ in scalars(run_dir).get("loss/critic", [])] if step else []
            if step and logged and max(logged) > step:
                break
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "no checkpoint with rows after it in time"
            time.sleep(0.2)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    killed_at = checkpoint_step(run_dir)

    resumed = run_cli("sac-train", *ARGS, "total_steps=1200", f"hydra.run.dir={run_dir}",
                      cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {killed_at}" in resumed.stderr

    expected: dict[str, list[tuple[int, float]]] = {}
    for row in read_metrics(run_dir):
        for key, value in row.items():
            if key not in ("step", "time"):
                expected.setdefault(key, []).append((row["step"], value))
    logged = scalars(run_dir)
    assert set(logged) == set(expected)
    for tag, points in expected.items():
        assert [s for s, _ in logged[tag]] == [s for s, _ in points], tag  # once per step
        for (_, got), (_, want) in zip(logged[tag], points, strict=True):
            assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6), tag  # float32 there
    assert max(s for s, _ in logged["train/episode_return"]) == 1200
    config = events(run_dir).Tensors("config/text_summary")
    assert len(config) == 1 and '"total_steps": 100000' in config[0].tensor_proto.string_val[
        0].decode()  # the first attempt's composed config, written once


def test_an_evaluation_video_is_an_animated_image_at_its_step(tmp_path: Path):
    video = tmp_path / "eval-step-5.mp4"
    with imageio.get_writer(video, fps=30) as writer:
        for i in range(60):
            writer.append_data(np.full((48, 64, 3), 4 * i, np.uint8))
    log = TensorBoardLog(tmp_path, {"seed": 0}, resume_step=0)
    log.log_video(5, video)
    log.close()
    (image,) = events(tmp_path).Images("eval/video")
    assert image.step == 5
    gif = Image.open(io.BytesIO(image.encoded_image_string))
    assert gif.format == "GIF" and gif.n_frames == 20  # 30 fps shown at 10
    assert max(gif.size) == 240


def test_without_the_package_the_key_is_one_line(tmp_path: Path):
    # A Python that cannot import tensorboard: its site-packages hidden behind a stub.
    stub = tmp_path / "stub"
    (stub / "tensorboard").mkdir(parents=True)
    (stub / "tensorboard" / "__init__.py").write_text("raise ImportError('no tensorboard')\n")
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(stub), env["PYTHONPATH"]])
    result = subprocess.run(
        [sys.executable, "-m", "sac_cli.cli.train", *ARGS, "total_steps=300",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "sac-train: error: logger.tensorboard=true needs TensorBoard: pip install "
        "'sac-cli[tensorboard]' (or 'tensorboard>=2.14,<3')"
    ), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["maybe", "[1]"])
def test_a_bad_value_is_one_line(tmp_path: Path, value: str):
    result = run_cli("sac-train", *ARGS[:-1], f"logger.tensorboard={value}", "total_steps=300",
                     cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "logger.tensorboard" in result.stderr.strip().splitlines()[-1]
