"""hydra/launcher=slurm and slurm_cpu: hydra-submitit-launcher's SlurmLauncher, told to say
what it does and to wait for every job whatever became of the others.

The plugin's own launcher prints nothing once the jobs are submitted and takes the first job
without a result (failed, cancelled, killed) for the end of the whole sweep. This one prints
the sweep directory, the job ids and their logs, each job's state as it changes and a
pending reason that waiting will not resolve; a job that ended without a result counts as
failed, or as stopped (resumable) when it wrote STOPPED_FILE, and the sweep goes on.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import config as plugin_config
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from omegaconf import OmegaConf

from sac_cli.cli.commands import quoted
from sac_cli.cli.sweep.jobs import JobFailed, is_optuna
from sac_cli.cli.sweep.queue import LeftQueued, QueueWatch, say
from sac_cli.cli.sweep.summary import SWEEP
from sac_cli.training.signals import STOP

log = logging.getLogger(__name__)


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        # In the job: submitit's lines go to its own handler (the job's .out log) only, not
        # also to the root logger that Hydra sends to the .err log.
        logging.getLogger("submitit").propagate = False
        return super().__call__(*args, **kwargs)

    def _executor(self) -> Any:
        import submitit

        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=params.pop("submitit_folder"),
            slurm_max_num_timeout=params.pop("max_num_timeout"),
        )
        shared = set(OmegaConf.structured(plugin_config.BaseQueueConf).keys())
        executor.update_parameters(
            **{key if key in shared else f"slurm_{key}": v for key, v in params.items()}
        )
        return executor

    def launch(self, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        nums = [initial_job_idx + i for i in range(len(job_overrides))]
        params = [
            (list(o), "hydra.sweep.dir", n, f"job_id_for_{n}", Singleton.get_state())
            for n, o in zip(nums, job_overrides, strict=True)
        ]
        jobs = self._executor().map_array(self, *zip(*params, strict=True))
        SWEEP.submitted += len(jobs)
        array_id = jobs[0].job_id.split("_")[0]
        folder = quoted(jobs[0].paths.folder.parent)
        say(
            f"submitted {len(jobs)} SLURM job(s), array {array_id}, for the sweep in "
            f"{quoted(sweep_dir)}; their logs: {folder}/<job id>/<job id>_0_log.out and .err"
        )
        for num, overrides, job in zip(nums, job_overrides, jobs, strict=True):
            say(f"  job #{num}: SLURM job {job.job_id}: {' '.join(filter_overrides(overrides))}")
        watch = QueueWatch(array_id, [job.job_id for job in jobs], self._resources())
        by_id = {job.job_id: job for job in jobs}
        watch.wait(
            lambda job_id: by_id[job_id].paths.result_pickle.exists(),
            lambda: STOP.signum is not None,
        )
        if STOP.signum is not None:
            raise LeftQueued(STOP.signum, array_id)
        return [
            self._outcome(num, list(o), job, watch.ended.get(job.job_id, "?"))
            for num, o, job in zip(nums, job_overrides, jobs, strict=True)
        ]

    def _resources(self) -> str:
        p = self.params
        cpus = p.get("cpus_per_task") or 1
        gpus = f", {p['gpus_per_node']} GPU(s)" if p.get("gpus_per_node") else ""
        return f"{cpus} CPU(s), {p.get('mem_gb')} GB{gpus} and {p.get('timeout_min')} min"

    def _outcome(self, num: int, overrides: list[str], job: Any, state: str) -> JobReturn:
        """The job's JobReturn; one that ended without a result file (it failed or stopped,
        see jobs.py, or SLURM ended it) does not stop the sweep."""
        assert self.config is not None
        if job.paths.result_pickle.exists():
            try:
                return job.results()[0]
            except Exception as error:  # an Optuna trial's JobFailed, or a crash in Hydra
                return JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=error)
        SWEEP.ended[num] = (job.job_id, state, str(job.paths.stderr))
        if is_optuna(self.config.hydra.sweeper):
            failed = JobFailed(f"job #{num} (SLURM job {job.job_id}) ended {state}")
            return JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=failed)
        return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=math.nan)
