"""A real single-node SLURM for the cluster tests: munged, MariaDB, slurmdbd, slurmctld and
slurmd started in the foreground as root (no systemd), each with its files under one folder,
and stopped by pid. Needs Debian's slurm-wlm, slurmdbd, munge and mariadb-server packages
(tests/cluster/install.sh).

By hand: `python tests/cluster/slurm_cluster.py /tmp/slurm [more-slurm.conf-lines]` starts
one and prints the SLURM_CONF to export; Ctrl-C (or SIGTERM) stops it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PROGRAMS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
# Ports away from the defaults, so that a cluster already on the machine is left alone.
CTLD_PORT, SLURMD_PORT, DBD_PORT, DB_PORT = 16817, 16818, 16819, 13306
DB_USER, DB_PASS = "slurm", "slurm-test"


def missing() -> str | None:
    """Why this machine cannot start the cluster, or None."""
    absent = [d for d in PROGRAMS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    if absent:
        return f"no {', '.join(absent)} (make test-slurm installs them with apt-get)"
    if os.geteuid() != 0:
        return "the SLURM daemons are started as root"
    return None


def _exe(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class SlurmCluster:
    def __init__(self, root: Path, extra: str = "") -> None:
        self.root = root
        self.extra = extra  # more slurm.conf lines (partitions, preemption)
        self.host = socket.gethostname().split(".")[0]
        self.conf = root / "etc" / "slurm.conf"
        self.procs: list[tuple[str, subprocess.Popen]] = []

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        done = subprocess.run(
            args, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def _daemon(self, name: str, *args: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115 (kept by the process)
        proc = subprocess.Popen(
            [_exe(name), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.procs.append((name, proc))

    def _wait(self, what: str, ready, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    tail = (self.root / "log" / f"{name}.out").read_text()[-2000:]
                    raise RuntimeError(f"{name} exited ({proc.returncode}) before {what}:\n{tail}")
            try:
                if ready():
                    return
            except (RuntimeError, subprocess.TimeoutExpired, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"SLURM test cluster: no {what} in {timeout:.0f} s (logs: {self.root})")

    def start(self) -> SlurmCluster:
        for sub in ("etc", "log", "db", "state", "spool", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        try:
            self._start_munge()
            self._start_mariadb()
            self._write_configs()
            self._daemon("slurmdbd", "-D")
            self._wait("slurmdbd to listen", lambda: _listening(DBD_PORT))
            self._daemon("slurmctld", "-D", "-i")
            self._wait("slurmctld to answer", lambda: self.run("scontrol", "ping") and True)
            self._daemon("slurmd", "-D", "-N", self.host)
            self._wait("the node to be idle", lambda: "idle" in self.run(
                "sinfo", "-h", "-N", "-o", "%t"))  # fmt: skip
            self._wait("accounting (sacct)", lambda: self.run("sacct", "-n", "-X") is not None)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munge(self) -> None:
        if (
            MUNGE_SOCKET.exists()
            and subprocess.run(["munge", "-n"], capture_output=True, check=False).returncode == 0
        ):
            return  # a munged already runs (the machine's own): share it
        MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "--create", "--force"], check=True, capture_output=True)
        for path in (MUNGE_SOCKET.parent, key, key.parent):
            shutil.chown(path, "munge", "munge")
        self._daemon("munged", "--foreground", "--force")
        self._wait("munged", lambda: subprocess.run(
            ["munge", "-n"], capture_output=True, check=False).returncode == 0)  # fmt: skip

    def _start_mariadb(self) -> None:
        data, sock = self.root / "db", self.root / "run" / "mysqld.sock"
        subprocess.run(
            [_exe("mariadb-install-db"), "--no-defaults", f"--datadir={data}", "--user=root",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self._daemon(
            "mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}", "--user=root",
            f"--port={DB_PORT}", "--bind-address=127.0.0.1", "--skip-name-resolve",
            f"--pid-file={self.root / 'run' / 'mariadbd.pid'}",
        )  # fmt: skip
        self._wait("MariaDB", sock.exists)
        grant = (
            f"CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASS}';"
            f"GRANT ALL ON *.* TO '{DB_USER}'@'127.0.0.1'; FLUSH PRIVILEGES;"
        )
        self._wait("MariaDB to take a user", lambda: subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "-e", grant],
            capture_output=True, check=False).returncode == 0)  # fmt: skip

    def _write_configs(self) -> None:
        cpus = os.cpu_count() or 1
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        r = self.root
        self.conf.write_text(f"""\
ClusterName=sactest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={CTLD_PORT}
SlurmdPort={SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it runs again (default 120).
AuthInfo=cred_expire=10
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost={self.host}
AccountingStoragePort={DBD_PORT}
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
KillWait=30
MinJobAge=300
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={max(1024, mem_mb - 1024)}
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
{self.extra}""")
        dbd = r / "etc" / "slurmdbd.conf"
        dbd.write_text(f"""\
AuthType=auth/munge
DbdHost={self.host}
DbdPort={DBD_PORT}
SlurmUser=root
PidFile={r}/run/slurmdbd.pid
LogFile={r}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={DB_PORT}
StorageUser={DB_USER}
StoragePass={DB_PASS}
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)

    def cancel_all(self, timeout: float = 90) -> None:
        """Cancel every job and wait for the queue to empty (no job step outlives slurmd)."""
        self.run("scancel", f"--user={os.getuid()}", check=False)
        deadline = time.monotonic() + timeout
        while self.run("squeue", "-h", check=False).strip() and time.monotonic() < deadline:
            time.sleep(1)

    def stop(self) -> None:
        """Cancel the jobs left, then stop every daemon this cluster started, by pid, the
        last started first."""
        if any(name == "slurmd" and proc.poll() is None for name, proc in self.procs):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.cancel_all()
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    extra = Path(sys.argv[2]).read_text() if len(sys.argv) > 2 else ""
    cluster = SlurmCluster(Path(sys.argv[1]).absolute(), extra).start()
    print(f"export SLURM_CONF={cluster.conf}  # Ctrl-C stops the cluster", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
