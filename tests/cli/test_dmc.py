"""DeepMind Control Suite tasks through the real commands and the real dm_control (via shimmy):
a short run of dmc/cheetah-run, its evaluation with a video, a killed run resumed bit-identical
to an uninterrupted one, the defaults chosen for env.id=dm_control/..., and bad ids."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers.cli import cli_env, read_metrics, run_cli, without_wall_clock

# Looked up, not imported: dm_control's absl logging, set up in this process, would outlive
# the streams that later in-process tests (test_eval's call_main) give Hydra's logging.
if not all(importlib.util.find_spec(name) for name in ("dm_control", "shimmy")):
    pytest.skip("DeepMind Control tasks need pip install 'sac-cli[dmc]'", allow_module_level=True)

# Two 1000-step episodes; the checkpoint at step 1000 falls on the episode boundary, where a
# resume continues exactly. Evaluations are cut at 100 steps (DMC ids have no Gymnasium limit).
DMC_ARGS = [
    "env=dmc/cheetah-run",
    "network.hidden_sizes=[32,32]",
    "total_steps=2000",
    "learning_starts=900",
    "agent.batch_size=64",
    "agent.buffer_size=5000",
    "eval.every=1000",
    "eval.episodes=1",
    "eval.max_episode_steps=100",
    "checkpoint.every=1000",
    "logger.every=500",
    "logger.mode=disabled",
    "threads=1",
]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dmc")
    result = run_cli("sac-train", *DMC_ARGS, f"hydra.run.dir={root / 'run'}", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "run"


def test_a_dmc_run_learns_from_flat_observations_and_logs_whole_episodes(straight_run: Path):
    saved = yaml.safe_load((straight_run / ".hydra" / "config.yaml").read_text())
    assert saved["env"]["id"] == "dm_control/cheetah-run-v0"
    rows = read_metrics(straight_run)
    episodes = [row for row in rows if "train/episode_return" in row]
    # cheetah-run's episodes end by time (1000 steps), its rewards lie in [0, 1] per step.
    assert [(row["step"], row["train/episode_length"]) for row in episodes] == [
        (1000, 1000), (2000, 1000)]
    assert all(0.0 <= row["train/episode_return"] <= 1000.0 for row in episodes)
    assert [row["step"] for row in rows if "eval/return_mean" in row] == [1000, 2000]
    assert any("loss/critic" in row for row in rows)
    agent = torch.load(straight_run / "checkpoints" / "final.pt", weights_only=True)["agent"]
    # cheetah's observation: position (8) and velocity (9) flattened into 17 inputs; 6 actions.
    assert agent["actor.net.0.weight"].shape[1] == 17
    assert agent["critic.weights.0"].shape[1] == 17 + 6  # the Q ensemble's input: (s, a)


def test_sac_eval_repeats_the_last_evaluation_and_films_it(straight_run: Path, tmp_path: Path):
    result = run_cli("sac-eval", f"checkpoint={straight_run}", "episodes=1", "video=true",
                     f"out={tmp_path / 'eval'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(next((tmp_path / "eval").glob("eval-*.json")).read_text())
    assert (report["env_id"], report["step"], report["lengths"]) == (
        "dm_control/cheetah-run-v0", 2000, [100])
    last_eval = [row for row in read_metrics(straight_run) if "eval/return_mean" in row][-1]
    assert report["return_mean"] == last_eval["eval/return_mean"]
    (video,) = report["videos"]
    from moviepy import VideoFileClip

    clip = VideoFileClip(video)
    # The tracking side camera at MuJoCo tasks' size, one frame per 0.01 s control step.
    assert (tuple(clip.size), clip.fps) == ((480, 480), 100)
    assert clip.duration == pytest.approx(1.0, abs=0.05)
    assert clip.get_frame(0.5).std() > 10  # a picture, not a blank frame
    clip.close()


def test_killed_dmc_run_resumes_bit_identical(straight_run: Path, tmp_path: Path):
    killed = tmp_path / "killed"
    last = killed / "checkpoints" / "last.pt"
    process = subprocess.Popen(
        [sys.executable, "-m", "sac_cli.cli.train", *DMC_ARGS, f"hydra.run.dir={killed}"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not last.exists():
            assert process.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert torch.load(last, weights_only=True)["step"] == 1000
    assert not (killed / "checkpoints" / "final.pt").exists()

    resumed = run_cli("sac-train", *DMC_ARGS, f"hydra.run.dir={killed}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "at step 1000" in resumed.stderr
    expected = torch.load(straight_run / "checkpoints" / "final.pt", weights_only=True)["agent"]
    got = torch.load(killed / "checkpoints" / "final.pt", weights_only=True)["agent"]
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, got[name]), name
    assert without_wall_clock(read_metrics(killed)) == without_wall_clock(
        read_metrics(straight_run))


def composed(tmp_path: Path, *args: str) -> dict:
    result = run_cli("sac-train", *args, "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize("env_id", ["dm_control/cheetah-run-v0", "dm_control/dog-run-v0"],
                         ids=["own-file", "generic-dmc"])
def test_env_id_of_a_dmc_task_gets_the_dmc_defaults(tmp_path: Path, env_id: str):
    config = composed(tmp_path, f"env.id={env_id}")
    assert config["env"]["id"] == env_id
    assert (config["total_steps"], config["learning_starts"]) == (1_000_000, 5000)
    assert config["env"]["reward_scale"] == 1.0
    if env_id.endswith("cheetah-run-v0"):
        assert composed(tmp_path, "env=dmc/cheetah-run") == config


def test_help_lists_the_dmc_tasks(tmp_path: Path):
    result = run_cli("sac-train", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (tasks,) = [line for line in result.stdout.splitlines() if line.startswith("env/dmc: ")]
    assert "cheetah-run" in tasks and "walker-walk" in tasks
    assert "env=dmc/<domain>-<task>" in result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["env=dmc/cheetah-fly"], ["env=dmc/cheetah-fly", "is not an option"]),
        (["env.id=dm_control/cheetah-fly-v0"], ["dm_control/cheetah-fly-v0",
                                                "dm_control/cheetah-run-v0"]),
    ],
    ids=["unknown-option", "unknown-id"],
)
def test_unknown_dmc_task_is_one_line(tmp_path: Path, args: list[str], words: list[str]):
    result = run_cli("sac-train", *args, "total_steps=10", "logger.mode=disabled",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sac-train: error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
