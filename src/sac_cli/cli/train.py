"""`sac-train`: compose the config, build the parts, hand them to the trainer.

A sweep (`sac-train -m ...`) runs the same task once per job; the sweep package holds what a
job of a sweep adds (names, shared cores, failure isolation, requeue under submitit).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from sac_cli.cli import sweep
from sac_cli.cli.errors import env_file_for_id, exit_on_user_error, run_cli
from sac_cli.config import TrainConfig, register_configs, validate
from sac_cli.device import resolve_device
from sac_cli.errors import UserError
from sac_cli.training.builders import build_parts, build_trainer
from sac_cli.training.checkpoint import CHECKPOINT_DIR, LAST
from sac_cli.training.loop import Trainer
from sac_cli.training.progress import plural, summary
from sac_cli.training.run_dir import locked, write_hydra_record
from sac_cli.training.signals import STOP, Stopped
from sac_cli.training.update import default_torch_threads

log = logging.getLogger(__name__)

PROG = "sac-train"

register_configs()


def train(cfg: DictConfig) -> float:
    """One run: returns its last evaluation's mean return (an Optuna trial's objective).

    The run directory's record (.hydra/) is written for a new run before anything else (a
    run that fails on a bad value still says what it was asked), and for an existing one only
    once its resume is allowed and has steps to train (see training/run_dir.py)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    STOP.raise_if_requested(run_dir)
    with locked(run_dir):
        resuming = (run_dir / CHECKPOINT_DIR / LAST).exists()
        if not resuming:
            write_hydra_record(run_dir, cfg, HydraConfig.instance().cfg)
        trainer = configure(cfg, run_dir)
        trainer.start()  # refuses a resume with other settings before anything is written
        if resuming and trainer.step < trainer.cfg.total_steps:
            write_hydra_record(run_dir, cfg, HydraConfig.instance().cfg)
        preempt = sweep.submitit_preempt_signal()
        if preempt is not None:
            return sweep.run_requeueable(trainer, preempt)
        result = trainer.run()
    if not sweep.is_multirun():
        state = trainer.state
        print(f"{PROG}: " + summary(
            run_dir, state.step, trainer.steps_trained, trainer.wall_time,
            state.last_eval_return, state.best_return, state.best_step,
        ), file=sys.stderr)  # fmt: skip
    return result


def configure(cfg: DictConfig, run_dir: Path) -> Trainer:
    try:
        config: TrainConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    except MissingMandatoryValue as error:
        raise UserError(f"{error.full_key} is not set: pass {error.full_key}=<value>") from None
    validate(config)
    device = resolve_device(config.device)
    share = sweep.job_threads()  # this job's cores when a sweep runs jobs side by side
    threads = config.threads if config.threads is not None else share
    if threads is None:
        threads = default_torch_threads(device)
    if threads is not None:
        torch.set_num_threads(threads)
    config_dict = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    if sweep.is_multirun():
        sweep.name_wandb_run(config, config_dict)  # type: ignore[arg-type]
    parts = build_parts(config, device, shares_cores=share is not None)
    # Jobs of a sweep that run side by side share the terminal: labelled lines, no bars.
    style = (str(config.logger.name), share is None) if sweep.is_multirun() else ("", True)
    trainer = build_trainer(config, run_dir, parts, config_dict, style)  # type: ignore[arg-type]
    log.info(
        "training %s with %s for %s (the first %s random) on %s (%s%s), update %s, in %s",
        config.env.id,
        config.agent.name.value,
        plural(config.total_steps, "step"),
        f"{min(config.learning_starts, config.total_steps):,}",
        device,
        plural(torch.get_num_threads(), "thread"),
        ", critic and policy branches in parallel" if trainer.engine.branch_threads else "",
        parts.compile_choice.why,
        run_dir,
    )
    return trainer


@hydra.main(version_base="1.3", config_path="pkg://sac_cli.conf", config_name="train")
@exit_on_user_error(PROG)
def _hydra_main(cfg: DictConfig) -> float:
    if sweep.is_multirun():
        return sweep.run_job(cfg, train)
    return train(cfg)


def main() -> None:
    STOP.install()
    sys.argv[1:] = env_file_for_id(sys.argv[1:])
    if not sys.stderr.isatty():
        # No colour codes in redirected logs (Optuna's colorlog honours the convention).
        os.environ.setdefault("NO_COLOR", "1")
    sweep.SWEEP.dir = None  # set by SweepCallback when this is a multirun
    sweep.SWEEP.ended.clear()
    sweep.SWEEP.submitted = 0
    try:
        run_cli(_hydra_main, PROG)
    except (Stopped, sweep.SweepStopped, sweep.LeftQueued) as stop:
        print(f"{PROG}: {stop}", file=sys.stderr)
        sys.exit(sweep.exit_code(stop.signum))
    except Exception as error:
        if sweep.SWEEP.dir is None:
            raise
        sweep.report_sweep_error(error)
        sys.exit(1)
    if sweep.report_failures():
        sys.exit(1)


if __name__ == "__main__":
    # `python -m sac_cli.cli.train`: run the importable module's copy, so that the task that
    # joblib and submitit pickle is found by reference in their worker processes.
    from sac_cli.cli import train as importable

    importable.main()
