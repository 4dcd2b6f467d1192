"""What `sac-train -m` adds to a single run: job names, shared cores, failure isolation,
requeue under submitit, and the failed jobs reported once the sweep is over.

In a multirun each job gets:
- a run directory named from its overrides (`hydra.sweep.subdir`, made safe by `job_dirname`);
- a W&B group (the sweep directory) and run name (the job's overrides) when logger.group and
  logger.name are null;
- a torch thread count that shares the cores between the jobs running at once;
- failure isolation: an exception ends that job only; it is written to `<run dir>/error.txt`,
  the job returns NaN (under Optuna it raises JobFailed: a failed trial), and when the sweep
  is over `sac-train` prints one line per failed job and exits 1. A stop signal (Ctrl-C,
  SIGTERM, SIGUSR1) stops the whole sweep instead;
- under submitit (hydra/launcher=submitit_slurm, submitit_local, slurm), submitit's preemption
  signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise) first writes a checkpoint at the
  end of the current step; submitit then requeues the job, which resumes from it;
- on SLURM (slurm.py, queue.py): the sweep directory, job ids, logs and states are printed
  while `sac-train` waits for every job; a failed job exits 1 (FAILED in sacct); a job
  stopped by another signal (SIGTERM: scancel, `scontrol requeue`) checkpoints, writes
  stopped.txt and leaves no result, so that the sweep waits for SLURM's requeue, or reports
  it stopped (resumable) if none comes.
"""

from sac_cli.cli.sweep.context import is_multirun, job_threads, name_wandb_run
from sac_cli.cli.sweep.jobs import SweepStopped, run_job
from sac_cli.cli.sweep.queue import LeftQueued
from sac_cli.cli.sweep.requeue import run_requeueable, submitit_preempt_signal
from sac_cli.cli.sweep.summary import SWEEP, exit_code, report_failures, report_sweep_error

__all__ = [
    "SWEEP",
    "LeftQueued",
    "SweepStopped",
    "exit_code",
    "is_multirun",
    "job_threads",
    "name_wandb_run",
    "report_failures",
    "report_sweep_error",
    "run_job",
    "run_requeueable",
    "submitit_preempt_signal",
]
