"""What a job of a sweep learns from Hydra's config: that it is one, its share of the cores,
its label, and its W&B group and name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from sac_cli.cli.sweep.naming import job_name
from sac_cli.config import TrainConfig
from sac_cli.device import usable_cpus

# W&B limits a group name to 128 characters.
MAX_GROUP = 128


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_group(sweep_dir: str) -> str:
    """The W&B group of a sweep: its directory, relative to the working directory if inside."""
    path = Path(sweep_dir)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())
    group = path.as_posix()
    return group if len(group) <= MAX_GROUP else group[-MAX_GROUP:]


def threads_per_job(launcher: Any, cpus: int) -> int | None:
    """torch threads for one job of a sweep, from the launcher's config; None keeps torch's
    default (the job has the machine, or its SLURM allocation, to itself)."""
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs", -1))
        # joblib's own rule: a negative n_jobs counts back from the number of cores.
        parallel = max(1, cpus + 1 + n_jobs if n_jobs < 0 else n_jobs)
        return max(1, cpus // parallel) if parallel > 1 else None
    if "submitit" in target:
        per_task = launcher.get("cpus_per_task")
        if per_task:
            return int(per_task)
        # submitit_local starts every job of the sweep at once, whatever their number; a
        # SLURM job is confined to its allocation (torch sees it through the CPU affinity).
        return 1 if target.endswith("LocalLauncher") else None
    return None  # the basic launcher runs one job at a time


def job_threads() -> int | None:
    """torch threads for this job when `threads` is null (None: torch's default)."""
    if not is_multirun():
        return None
    return threads_per_job(HydraConfig.get().launcher, usable_cpus())


def job_label(hydra_cfg: Any, seed: Any) -> str:
    return f"job #{hydra_cfg.job.num} ({job_name(str(hydra_cfg.job.override_dirname), seed)})"


def name_wandb_run(config: TrainConfig, config_dict: dict[str, Any]) -> None:
    """In a sweep, null logger.group/name become the sweep directory and the job's name; filled
    into this job's copies only, so .hydra/config.yaml keeps the user's null."""
    hydra_cfg = HydraConfig.get()
    if config.logger.group is None:
        config.logger.group = sweep_group(str(hydra_cfg.sweep.dir))
    if config.logger.name is None:
        config.logger.name = job_name(str(hydra_cfg.job.override_dirname), config.seed)
    config_dict["logger"]["group"] = config.logger.group
    config_dict["logger"]["name"] = config.logger.name
