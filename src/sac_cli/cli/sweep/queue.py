"""Watching a sweep's jobs in the SLURM queue from `sac-train -m`: their states as they
change, a pending reason that waiting will not resolve, and when each job has ended."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

PROG = "sac-train"
POLL_S = 3.0

# Pending reasons that no amount of waiting resolves: the job asks for more than the
# partition, its QOS or its account allows, or is held.
HOPELESS = re.compile(
    r"^(PartitionConfig|PartitionNodeLimit|PartitionTimeLimit|BadConstraints|InvalidAccount|"
    r"InvalidQOS|DependencyNeverSatisfied|JobHeld(User|Admin)|"
    r"(QOS|Assoc)\w*PerJob\w*)$"
)
# States of a job that will not run again (until someone requeues it by hand).
ENDED = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "OUT_OF_MEMORY", "NODE_FAIL",
    "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT",
}  # fmt: skip


def say(line: str) -> None:
    print(f"{PROG}: {line}", file=sys.stderr, flush=True)


def squeue(array_id: str) -> dict[str, tuple[str, str]] | None:
    """{job id: (state, reason)} of an array's tasks (ended ones stay listed for MinJobAge);
    None when squeue does not answer."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-t", "all", "-j", array_id, "-o", "%i|%T|%r"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    rows = (line.split("|", 2) for line in out.splitlines() if line.count("|") == 2)
    return {job: (state, reason) for job, state, reason in rows}


def hopeless_hint(reason: str, resources: str) -> str:
    return (
        f"pends with Reason={reason}, which waiting will not resolve: it asks for {resources}, "
        "more than the partition (or your QOS/account) allows; `sinfo -o '%P %c %m %l'` "
        "shows what each partition has. Cancel the sweep (Ctrl-C, then scancel) and run it "
        "again with smaller hydra.launcher.cpus_per_task, mem_gb, timeout_min or another "
        "hydra.launcher.partition"
    )


class LeftQueued(BaseException):
    """`sac-train` stopped waiting (Ctrl-C, SIGTERM): the jobs go on in SLURM."""

    def __init__(self, signum: int, array_id: str) -> None:
        self.signum = signum
        super().__init__(
            f"stopped waiting ({signal.Signals(signum).name}); the sweep's jobs stay in SLURM: "
            f"`squeue -j {array_id}` shows them, `scancel {array_id}` cancels them"
        )


@dataclass
class QueueWatch:
    """The jobs of one submitted array, polled until every one has ended."""

    array_id: str
    job_ids: list[str]
    resources: str
    seen: dict[str, str] = field(default_factory=dict)
    warned: set[tuple[str, str]] = field(default_factory=set)
    ended: dict[str, str] = field(default_factory=dict)

    def poll(self, result_ready) -> bool:
        """One look at the queue; True once every job has ended (or written its result)."""
        queue = squeue(self.array_id)
        for job in self.job_ids:
            if job in self.ended:
                continue
            if queue is None:
                if result_ready(job):
                    self.ended[job] = "COMPLETED"
                continue
            state, reason = queue.get(job, ("ENDED", ""))
            if state != self.seen.get(job):
                shown = f"{state} ({reason})" if state == "PENDING" and reason != "None" else state
                say(f"SLURM job {job}: {shown}")
                self.seen[job] = state
            if state == "PENDING" and HOPELESS.match(reason) and (job, reason) not in self.warned:
                self.warned.add((job, reason))
                say(f"SLURM job {job} {hopeless_hint(reason, self.resources)}")
            if state in ENDED or state == "ENDED":
                self.ended[job] = state
        return len(self.ended) == len(self.job_ids)

    def wait(self, result_ready, stop_requested) -> None:
        while not self.poll(result_ready):
            deadline = time.monotonic() + POLL_S
            while time.monotonic() < deadline:
                if stop_requested():
                    return
                time.sleep(0.2)
