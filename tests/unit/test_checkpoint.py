"""Checkpoint files: every piece of training state survives a save and a load; writes are
atomic; bad and malicious files are refused with one clear error."""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from sac_cli.config import TrainConfig, schema_of
from sac_cli.errors import UserError
from sac_cli.files import FILE_MODE
from sac_cli.seeding import rng_state
from sac_cli.training import checkpoint as ckpt
from sac_cli.training.builders import build_parts, build_trainer
from sac_cli.training.loop import Trainer


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny networks: one thread is several times faster than two on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides: Any) -> tuple[TrainConfig, dict]:
    base = {
        "env": {"id": "Pendulum-v1"},
        "network": {"hidden_sizes": [16, 16]},
        "agent": {"batch_size": 32, "buffer_size": 1000},
        "total_steps": 300,
        "learning_starts": 100,
        "eval": {"every": 300, "episodes": 1},
        "checkpoint": {"every": 200},
        # Losses are logged at step 250: the 50 updates after it stay in the accumulator.
        "logger": {"mode": "disabled", "every": 250},
        "seed": 3,
    }
    merged = OmegaConf.merge(schema_of(overrides), base, overrides)  # the agent's own schema
    return OmegaConf.to_object(merged), OmegaConf.to_container(merged, enum_to_str=True)


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    """Equal all the way down; tensors and arrays bit for bit (NaN equals NaN)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b) or (a.isnan() == b.isnan()).all(), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def trained(tmp_path: Path, **overrides: Any) -> Trainer:
    cfg, config_dict = tiny_config(**overrides)
    trainer = build_trainer(cfg, tmp_path, build_parts(cfg, torch.device("cpu")), config_dict)
    trainer.run()
    return trainer


@pytest.mark.parametrize(("agent", "temperature"), [("sac", "auto"), ("sac_v1", "fixed")])
def test_every_piece_of_state_round_trips(tmp_path: Path, agent: str, temperature: str):
    overrides = {"agent": {"name": agent}, "temperature": {"mode": temperature}}
    first = trained(tmp_path, **overrides)
    saved_rng = rng_state(first.env)
    # Move every global generator on, so that a restore that forgot one would be caught.
    random.random(), np.random.rand(), torch.rand(3)

    cfg, config_dict = tiny_config(**overrides)
    second = build_trainer(cfg, tmp_path, build_parts(cfg, torch.device("cpu")), config_dict)
    resumed = second.checkpoints.resume()  # restores the parts; the environment not reset

    assert_same(second.agent.state_dict(), first.agent.state_dict(), "agent")
    assert second.engine.optimizers.keys() == first.engine.optimizers.keys()
    for name, optimizer in first.engine.optimizers.items():
        restored = second.engine.optimizers[name].state_dict()
        assert_same(restored, optimizer.state_dict(), f"optimizer {name}")
        assert restored["state"], f"optimizer {name} has no moments: nothing was tested"
    assert torch.equal(second.agent.temperature.log_alpha, first.agent.temperature.log_alpha)
    assert second.agent.temperature.learned == (temperature == "auto")
    assert_same(second.buffer.state_dict(), first.buffer.state_dict(), "buffer")
    assert len(second.buffer) == 300
    assert_same(rng_state(second.env), saved_rng, "rng")
    for name in ("step", "episodes", "last_checkpoint_step", "best_return",
                 "last_eval_return", "wandb_run_id"):
        assert getattr(resumed, name) == getattr(first.state, name), name
    assert second.checkpoints.buffer_file_step == first.checkpoints.buffer_file_step
    assert (resumed.step, resumed.episodes) == (300, 1)
    assert second.engine.num_updates == first.engine.num_updates == 201
    assert_same(second.metrics.sums, first.metrics.sums, "metrics")
    assert second.metrics.count == first.metrics.count == 50

    # Behaviour, not only values: the same next update gives the same weights.
    generator = torch.get_rng_state()
    first.engine.update(first.buffer.sample(32))
    torch.set_rng_state(generator)
    second.engine.update(second.buffer.sample(32))
    assert_same(second.agent.state_dict(), first.agent.state_dict(), "agent after an update")


def test_best_checkpoint_cannot_resume_but_final_and_last_share_one_buffer(tmp_path: Path):
    trained(tmp_path)
    folder = tmp_path / "checkpoints"
    last, final, best = (ckpt.load(folder / n) for n in (ckpt.LAST, ckpt.FINAL, ckpt.BEST))
    assert last["buffer_file"] == final["buffer_file"] == "buffer-300.pt"
    assert "buffer_file" not in best
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.pt", "buffer-300.pt", "final.pt", "last.pt"]


def test_files_get_the_usual_permissions(tmp_path: Path):
    path = tmp_path / "x.pt"
    ckpt.atomic_save({"a": torch.ones(2)}, path)
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE
    assert FILE_MODE & 0o044  # readable by group and others under a usual umask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    path = tmp_path / "last.pt"
    ckpt.atomic_save({"format": 1, "value": torch.tensor(1.0)}, path)
    with pytest.raises(Exception):  # noqa: B017 (whatever pickling raises)
        ckpt.atomic_save({"format": 1, "value": lambda: None}, path)
    assert torch.load(path, weights_only=True)["value"].item() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_unwritable_folder_is_one_line(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file")
    with pytest.raises(UserError, match="cannot write"):
        ckpt.atomic_save({"a": 1}, blocker / "checkpoints" / "last.pt")
    with pytest.raises(UserError, match="cannot write to"):
        ckpt.check_writable(blocker / "checkpoints")
    assert blocker.read_text() == "a regular file"


WRITER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from sac_cli.training.checkpoint import atomic_save
    path, i = Path(sys.argv[1]), 0
    while True:
        i += 1
        atomic_save({"format": 1, "i": i, "data": torch.full((2_000_000,), float(i))}, path)
        print(i, flush=True)
""")


def test_sigkill_during_writes_leaves_a_whole_checkpoint(tmp_path: Path):
    path = tmp_path / "last.pt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):  # three whole writes, then kill somewhere inside a later one
            assert writer.stdout.readline()
        time.sleep(0.05)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    state = ckpt.load(path, kind=None)
    assert state["i"] >= 3
    assert torch.equal(state["data"], torch.full((2_000_000,), float(state["i"])))
    ckpt.remove_stale_files(tmp_path, keep=[])
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class WritesAFile:
    def __init__(self, target: Path, how: str) -> None:
        self.target, self.how = target, how

    def __reduce__(self):
        if self.how == "system":
            return (os.system, (f"touch {self.target}",))
        return (open, (str(self.target), "w"))


def malicious_files(tmp_path: Path) -> list[tuple[Path, Path]]:
    """(file, the file its unpickling would create): a torch zip and a legacy raw pickle."""
    zipped, raw = tmp_path / "zipped.pt", tmp_path / "raw.pt"
    torch.save({"format": 1, "agent": WritesAFile(tmp_path / "pwned-zip", "system")}, zipped)
    with raw.open("wb") as handle:
        pickle.dump({"format": 1, "x": WritesAFile(tmp_path / "pwned-raw", "open")}, handle,
                    protocol=2)
    return [(zipped, tmp_path / "pwned-zip"), (raw, tmp_path / "pwned-raw")]


def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path):
    for path, target in malicious_files(tmp_path):
        with pytest.raises(UserError, match="refusing to load .* could run code") as error:
            ckpt.load(path)
        assert "\n" not in str(error.value)
        assert not target.exists()


def test_damaged_files_get_one_line_each(tmp_path: Path):
    good = tmp_path / "good.pt"
    ckpt.atomic_save({"format": 1, "config": {}, "env_id": "x", "obs_dim": 1, "act_dim": 1,
                      "step": 0, "agent": {"w": torch.arange(100_000.0)}}, good)
    data = good.read_bytes()
    cases = {
        "truncated.pt": data[: len(data) // 2],
        "empty.pt": b"",
        "garbage.pt": os.urandom(4096),
        "text.pt": b"hello\n",
        # A flipped region inside the tensor data: caught by the records' CRC32.
        "flipped.pt": data[:2000] + bytes(b ^ 0xFF for b in data[2000:2100]) + data[2100:],
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(UserError, match="not a readable checkpoint|corrupt") as error:
            ckpt.load(path)
        assert "\n" not in str(error.value), name
    with pytest.raises(UserError, match="does not exist"):
        ckpt.load(tmp_path / "missing.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    torch.save({"format": 1, "step": 3}, tmp_path / "partial.pt")
    with pytest.raises(UserError, match="not a sac-cli checkpoint"):
        ckpt.load(tmp_path / "list.pt")
    with pytest.raises(UserError, match="not a complete sac-cli checkpoint"):
        ckpt.load(tmp_path / "partial.pt")
    assert ckpt.load(good)["step"] == 0


def test_resolve_checkpoint_and_run_dir(tmp_path: Path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match="without checkpoints/last.pt"):
        ckpt.resolve_checkpoint(run)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    assert ckpt.resolve_checkpoint(run) == run / "checkpoints" / "last.pt"
    assert ckpt.run_dir_of(run / "checkpoints" / "last.pt") == run.resolve()
    assert ckpt.run_dir_of(tmp_path / "copy.pt") == tmp_path.resolve()
    with pytest.raises(UserError, match="does not exist"):
        ckpt.resolve_checkpoint(tmp_path / "nope.pt")


def test_the_overlapped_loop_trains_as_the_one_thread_loop(tmp_path: Path):
    """The trainer's loop lets the critic's step run on while the next step acts; its rows,
    weights, Adam moments and accumulated metrics are those of the plain one-thread loop."""
    runs = {}
    for threads in (True, False):
        cfg, config_dict = tiny_config(logger={"mode": "disabled", "every": 100})
        parts = build_parts(cfg, torch.device("cpu"))
        parts.engine.set_branch_threads(threads)
        trainer = build_trainer(cfg, tmp_path / str(threads), parts, config_dict)
        trainer.run()
        rows = [json.loads(line) for line in (tmp_path / str(threads) / "metrics.jsonl").open()]
        for row in rows:
            row.pop("time"), row.pop("perf/sps", None)
        runs[threads] = trainer, rows
    (overlapped, rows), (plain, plain_rows) = runs[True], runs[False]
    assert [list(row) for row in rows] == [list(row) for row in plain_rows]  # keys in order
    assert rows == plain_rows and any("loss/critic" in row for row in rows)
    assert_same(overlapped.agent.state_dict(), plain.agent.state_dict(), "agent")
    for name, optimizer in plain.engine.optimizers.items():
        assert_same(overlapped.engine.optimizers[name].state_dict(), optimizer.state_dict(), name)
    assert_same(overlapped.metrics.state_dict(), plain.metrics.state_dict(), "metrics")
    assert not overlapped.engine.overlap  # outside the loop, update() is synchronous again
