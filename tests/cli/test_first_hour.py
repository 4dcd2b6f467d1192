"""What a new user sees: a terminal (a real pseudo-terminal, not a pipe), the printed commands
run as printed, generic defaults for any env id, videos that keep the body in frame."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import TINY, cli_env, read_metrics, run_cli

# The console script, as `make` installs it next to this Python.
SAC_TRAIN = Path(sys.executable).with_name("sac-train")
needs_script = pytest.mark.skipif(not SAC_TRAIN.exists(), reason="sac-train not installed here")


class Terminal:
    """A command on a pseudo-terminal: what it shows is read back as a user would see it."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        # A terminal of 40 rows and 160 columns (a new pty reports 0x0, where no bar fits).
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        self.process = subprocess.Popen(
            args, cwd=cwd, env=cli_env(), stdin=slave, stdout=slave,
            stderr=slave, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.screen = ""

    def read_until(self, pattern: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.screen):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} on the terminal:\n{self.screen[-3000:]}")
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.screen += os.read(self.master, 65536).decode(errors="replace")
                except OSError:  # the command ended and closed the terminal
                    if self.process.poll() is not None:
                        raise AssertionError(
                            f"ended without {pattern!r}:\n{self.screen}"
                        ) from None
        return self.screen

    def finish(self, timeout: float = 120) -> int:
        code = self.process.wait(timeout=timeout)
        while select.select([self.master], [], [], 0.1)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.screen += chunk.decode(errors="replace")
        os.close(self.master)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@needs_script
def test_a_terminal_shows_each_evaluation_and_ends_with_a_summary(tmp_path: Path):
    run_dir = tmp_path / "run"
    term = Terminal([str(SAC_TRAIN), *TINY, "logger.mode=disabled", f"hydra.run.dir={run_dir}"],
                    cwd=tmp_path)  # fmt: skip
    try:
        screen = term.read_until(r"plot: ")
        assert term.finish() == 0
    finally:
        term.kill()
    # Each evaluation as a line above the bar, with its return.
    assert re.search(r"step 300/600 \| \d+ steps/s \| ETA [^|]+ \| eval_return -?\d", screen)
    assert re.search(r"step 600/600 .*eval_return -?\d", screen)
    last_eval = [r for r in read_metrics(run_dir) if "eval/return_mean" in r][-1]
    summary = screen[screen.index("done: 600 steps"):]
    assert f"final {last_eval['eval/return_mean']:.1f}" in summary
    assert "run directory: run" in summary and "checkpoints:   run/checkpoints/" in summary
    assert "evaluate:" in summary and "checkpoint=run/checkpoints/best.pt" in summary
    assert "sac-plot run" in summary


@needs_script
def test_the_resume_command_printed_on_ctrl_c_resumes(tmp_path: Path):
    # As `make train` starts a run: no hydra.run.dir, a new timestamped directory.
    args = [str(SAC_TRAIN), *TINY, "logger.mode=disabled", "total_steps=1000000"]
    term = Terminal(args, cwd=tmp_path)
    try:
        term.read_until(r"learning \d+ steps/s")  # the bar's own speed of the learning phase
        os.killpg(term.process.pid, signal.SIGINT)
        screen = term.read_until(r"to resume: .*hydra\.run\.dir=\S+")
        assert term.finish() == 128 + signal.SIGINT
    finally:
        term.kill()
    line = re.search(r"to resume: (.*hydra\.run\.dir=\S+)", screen).group(1)
    command = shlex.split(line)
    run_dir = tmp_path / command[-1].split("=", 1)[1]
    assert run_dir.is_relative_to(tmp_path / "outputs" / "Pendulum-v1")
    stopped_at = int(re.search(r"stopped by SIGINT at step (\d+)", screen).group(1))

    again = Terminal(command, cwd=tmp_path)  # as printed, from the same directory
    try:
        again.read_until(rf"resuming from \S+ at step {stopped_at}\b")
        again.read_until(r"step \d+/1000000")
        os.killpg(again.process.pid, signal.SIGINT)
        again.read_until(r"to resume: ")
        assert again.finish() == 128 + signal.SIGINT
    finally:
        again.kill()
    later = int(re.search(r"stopped by SIGINT at step (\d+)", again.screen).group(1))
    assert later > stopped_at


def test_an_env_id_without_its_own_file_gets_generic_defaults(tmp_path: Path):
    def composed(*args: str) -> str:
        result = run_cli("sac-train", *args, "--cfg", "job", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    generic = composed("env.id=MountainCarContinuous-v0")
    assert "id: MountainCarContinuous-v0" in generic
    assert "total_steps: 1000000" in generic and "learning_starts: 5000" in generic
    assert re.search(r"env:\n  id: MountainCarContinuous-v0\n  reward_scale: 1\.0", generic)
    own = composed("env.id=Pendulum-v1")  # an id with a file of its own gets that file
    assert "total_steps: 20000" in own and "learning_starts: 1000" in own


def test_metrics_rows_carry_the_wall_clock_time(tmp_path: Path):
    before = time.time()
    result = run_cli("sac-train", *TINY, "logger.mode=disabled", f"hydra.run.dir={tmp_path}/r",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    times = [row["time"] for row in read_metrics(tmp_path / "r")]
    assert before <= times[0] <= times[-1] <= time.time()


def test_small_ones_are_one_line(tmp_path: Path):
    cfg = run_cli("sac-train", "-m", "seed=0,1", "--cfg", "hydra", cwd=tmp_path)
    assert cfg.returncode == 2 and "Traceback" not in cfg.stderr
    assert cfg.stderr.strip().startswith("sac-train: error: Only one of")
    assert "drop -m" in cfg.stderr

    run_dir = tmp_path / "r"
    assert run_cli("sac-train", *TINY, "logger.mode=disabled", f"hydra.run.dir={run_dir}",
                   cwd=tmp_path).returncode == 0  # fmt: skip
    piped = subprocess.run(
        f"{shlex.quote(sys.executable)} -m sac_cli.cli.evaluate checkpoint={run_dir} episodes=2"
        " | head -1",
        shell=True, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert piped.stderr == "" and piped.stdout.count("\n") == 1
    assert (run_dir / "eval-last-step-600.json").is_file()  # written before the table


def test_a_halfcheetah_video_keeps_the_robot_in_frame(tmp_path: Path):
    from sac_cli.envs.make import make_env
    from sac_cli.envs.video import prepare_offscreen_rendering

    prepare_offscreen_rendering()
    env = make_env("HalfCheetah-v4", video_dir=tmp_path)
    try:
        env.reset(seed=0)
        base = env.unwrapped
        centre = []
        for x in (0.0, 15.0, 60.0):  # the start, and where a good policy runs to
            qpos, qvel = base.init_qpos.copy(), base.init_qvel.copy()
            qpos[0] = x
            base.set_state(qpos, qvel)
            frame = env.render().astype(np.int16)
            h, w, _ = frame.shape
            middle = frame[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
            # The body is orange and pink; floor and sky are grey, green, black and white.
            r, g, b = middle[..., 0], middle[..., 1], middle[..., 2]
            centre.append(float(((r > g + 40) & (r > b + 40)).mean()))
    finally:
        env.close()
    assert min(centre) > 0.02, centre
