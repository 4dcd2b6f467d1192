"""The sac-train command as a user runs it: smoke runs, determinism, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.cli import ABSENT_CUDA, read_metrics, run_cli, without_wall_clock

from sac_cli.device import usable_cpus

TRAIN_METRICS = {"train/episode_return", "train/episode_length"}
SAC_METRICS = {
    "loss/critic",
    "loss/actor",
    "loss/alpha",
    "alpha",
    "q/mean",
    "policy/entropy",
    "perf/sps",
}
EVAL_METRICS = {"eval/return_mean", "eval/return_std"}


def logged_keys(rows: list[dict]) -> set[str]:
    return {key for row in rows for key in row} - {"step", "time"}


def test_help_lists_groups_and_options(tmp_path: Path):
    result = run_cli("sac-train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for line in ("agent: sac, sac_v1", "temperature: auto, fixed", "network: default, small"):
        assert line in result.stdout
    assert "HalfCheetah-v4" in result.stdout and "Pendulum-v1" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_sac_smoke_run_logs_to_wandb_offline_and_disk(tmp_path: Path, tiny_args: list[str]):
    run_dir = tmp_path / "run"
    result = run_cli(
        "sac-train", *tiny_args, "logger.mode=offline", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    rows = read_metrics(run_dir)
    assert all("step" in row for row in rows)
    assert logged_keys(rows) >= TRAIN_METRICS | SAC_METRICS | EVAL_METRICS
    assert [row["step"] for row in rows if "eval/return_mean" in row] == [300, 600]
    offline_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1 and list(offline_runs[0].glob("run-*.wandb"))
    for name in ("last.pt", "final.pt", "best.pt"):
        assert (run_dir / "checkpoints" / name).is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_sac_v1_smoke_run_logs_the_value_loss(tmp_path: Path, tiny_args: list[str]):
    run_dir = tmp_path / "run"
    result = run_cli(
        "sac-train",
        *tiny_args,
        "agent=sac_v1",
        "logger.mode=disabled",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    keys = logged_keys(read_metrics(run_dir))
    assert {"loss/value", "loss/critic", "loss/actor", "alpha"} <= keys
    assert "loss/alpha" not in keys  # sac_v1 defaults to a fixed temperature


def test_halfcheetah_runs_a_few_hundred_steps(tmp_path: Path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "sac-train",
        "env=HalfCheetah-v4",
        "total_steps=400",
        "learning_starts=200",
        "network=small",
        "agent.batch_size=64",
        "eval.every=400",
        "eval.episodes=1",
        "logger.mode=disabled",
        "logger.every=100",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # threads unset: one torch thread, the two loss branches on two cores when there are two
    two_cores = usable_cpus() >= 2
    line = next(x for x in result.stdout.splitlines() + result.stderr.splitlines()
                if "training HalfCheetah-v4" in x)  # fmt: skip
    assert "(1 thread" in line
    assert ("critic and policy branches in parallel" in line) is two_cores
    rows = read_metrics(run_dir)
    eval_rows = [row for row in rows if "eval/return_mean" in row]
    assert len(eval_rows) == 1 and eval_rows[0]["step"] == 400
    assert any("loss/critic" in row for row in rows)
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_same_seed_twice_gives_identical_metrics(tmp_path: Path, tiny_args: list[str]):
    def run(name: str) -> list[dict]:
        run_dir = tmp_path / name
        result = run_cli(
            "sac-train",
            *tiny_args,
            "seed=3",
            "logger.mode=disabled",
            f"hydra.run.dir={run_dir}",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        return without_wall_clock(read_metrics(run_dir))

    first, second = run("a"), run("b")
    assert first == second
    assert any("loss/critic" in row for row in first)


BAD_INPUTS = [
    (["env.id=NoSuchEnv-v0"], "NoSuchEnv-v0"),
    (["env=NoSuchEnv-v0"], "env=NoSuchEnv-v0 is not an option"),
    (["env.id=CartPole-v1"], "Discrete"),
    (["agent.batchsize=64"], "agent.batchsize"),
    (["total_steps=lots"], "total_steps"),
    (["total_steps=-10"], "total_steps"),
    (["optimizer.actor_lr=-0.001"], "optimizer.actor_lr"),
    (["agent.batch_size=512", "agent.buffer_size=256"], "agent.batch_size"),
    # A CUDA device this machine lacks: any on a CPU machine, one past the last on a GPU one.
    ([f"device={ABSENT_CUDA}"], f"device={ABSENT_CUDA}"),
    (["device=tpu"], "device=tpu"),
    (["agent=sac_v2"], "agent=sac_v2 is not an option"),
    (["seed=-1"], "seed"),
]


@pytest.mark.parametrize(
    ("overrides", "named"), BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS]
)
def test_bad_input_gets_one_line_and_a_nonzero_exit(
    tmp_path: Path, overrides: list[str], named: str
):
    result = run_cli(
        "sac-train",
        "env=Pendulum-v1",
        *overrides,
        "logger.mode=disabled",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sac-train: error: ") and named in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
