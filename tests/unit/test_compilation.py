"""`compile: auto|true|false`: what each setting chooses, and what happens when this machine
cannot compile: auto trains eager (said in the run's first line, or, if compiling itself fails,
the same update eager), compile=true stops with one line."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch._inductor.config as inductor_config
from helpers.updates import engine_of, random_batch, tiny_sac

from sac_cli.config import AgentConfig, AgentName, TrainConfig, validate
from sac_cli.errors import UserError
from sac_cli.training.compilation import (
    COMPILE_MIN_UPDATES,
    choose_compile,
    missing_toolchain,
    planned_updates,
)
from sac_cli.training.replay import Batch
from sac_cli.training.update import UpdateEngine

CPU = torch.device("cpu")
OBS_DIM, ACT_DIM, BATCH = 4, 2, 16


def make_sac():
    return tiny_sac(OBS_DIM, ACT_DIM)


def batch(seed: int) -> Batch:
    return random_batch(seed, OBS_DIM, ACT_DIM, BATCH)


@pytest.fixture
def no_compiler() -> Iterator[None]:
    """Inductor told to use a C++ compiler that does not exist (what $CXX sets)."""
    with inductor_config.patch({"cpp.cxx": (None, "/nonexistent/c++")}):
        yield


@pytest.fixture
def failing_compiler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A C++ compiler that answers --version and fails every compilation, and an empty
    Inductor cache (so that the update really is compiled)."""
    compiler = tmp_path / "c++"
    compiler.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "c++ 1.0" && exit 0\nexit 1\n')
    compiler.chmod(compiler.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    with inductor_config.patch({"cpp.cxx": (None, str(compiler)), "fx_graph_cache": False}):
        yield


def test_false_is_eager_and_true_is_compiled_where_the_toolchain_is() -> None:
    assert not choose_compile(False, CPU, 10**7).on
    if missing_toolchain() is None:
        choice = choose_compile(True, CPU, 10)
        assert choice.on and not choice.fall_back
    else:
        with pytest.raises(UserError, match="compile=true needs"):
            choose_compile(True, CPU, 10)


def test_auto_compiles_long_cpu_runs_only() -> None:
    short = choose_compile("auto", CPU, COMPILE_MIN_UPDATES - 1)
    assert not short.on and "too few" in short.why
    gpu = choose_compile("auto", torch.device("cuda"), 10**7)
    assert not gpu.on and "CPU only" in gpu.why
    long = choose_compile("auto", CPU, COMPILE_MIN_UPDATES)
    assert long.on == (missing_toolchain() is None)
    assert long.fall_back or not long.on


def test_without_a_compiler_auto_runs_eager_and_true_is_refused(no_compiler) -> None:
    assert "C++ compiler" in (missing_toolchain() or "")
    choice = choose_compile("auto", CPU, 10**7)
    assert not choice.on and "needs a C++ compiler" in choice.why
    with pytest.raises(UserError, match=r"compile=true needs a C\+\+ compiler"):
        choose_compile(True, CPU, 10**7)


def test_planned_updates_count_the_learning_steps() -> None:
    cfg = TrainConfig(total_steps=3000, learning_starts=1000,
                      agent=AgentConfig(name=AgentName.sac, updates_per_step=2))  # fmt: skip
    assert planned_updates(cfg) == 4000
    cfg.learning_starts = 5000  # more random steps than steps: no updates
    assert planned_updates(cfg) == 0


@pytest.mark.parametrize("value", ["maybe", 1, None])
def test_compile_takes_auto_true_or_false(value) -> None:
    with pytest.raises(UserError, match=f"compile={value} is not one of auto, true, false"):
        validate(TrainConfig(compile=value))


def test_a_failed_compilation_falls_back_to_the_same_eager_update(failing_compiler) -> None:
    compiled = UpdateEngine(make_sac(), CPU, branch_threads=True, compile=True,
                            compile_fall_back=True)  # fmt: skip
    eager = engine_of(make_sac())
    for seed in range(3):
        torch.manual_seed(seed)
        got = compiled.update(batch(seed))
        torch.manual_seed(seed)
        want = eager.update(batch(seed))
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)
    assert "CppCompileError" in (compiled.compile_failure or "")
    assert compiled.num_updates == eager.num_updates == 3
    for p, q in zip(compiled.agent.parameters(), eager.agent.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_failed_compilation_under_compile_true_is_one_clear_error(failing_compiler) -> None:
    engine = UpdateEngine(make_sac(), CPU, branch_threads=False, compile=True)
    before = [p.detach().clone() for p in engine.agent.parameters()]
    with pytest.raises(UserError, match="torch.compile failed: .*CppCompileError.*compile=false"):
        engine.update(batch(0))
    assert all(torch.equal(p, q) for p, q in zip(engine.agent.parameters(), before, strict=True))
