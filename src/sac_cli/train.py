"""`sac-train`: compose the config, build the parts, hand them to the trainer."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from sac_cli.cli import run_cli
from sac_cli.config import TrainConfig, register_configs, validate
from sac_cli.device import resolve_device
from sac_cli.trainer import Stopped, Trainer

log = logging.getLogger(__name__)

register_configs()


def train(cfg: DictConfig) -> float:
    config: TrainConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    validate(config)
    device = resolve_device(config.device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    config_dict = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    trainer = Trainer(config, run_dir, device, config_dict)  # type: ignore[arg-type]
    log.info(
        "training %s with %s on %s in %s", config.env.id, config.agent.name.value, device, run_dir
    )
    return trainer.run()


@hydra.main(version_base="1.3", config_path="pkg://sac_cli.conf", config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    return train(cfg)


def main() -> None:
    try:
        run_cli(_hydra_main, "sac-train")
    except Stopped as stop:
        print(f"sac-train: {stop}", file=sys.stderr)
        sys.exit(128 + stop.signum if stop.signum != signal.SIGUSR1 else 0)


if __name__ == "__main__":
    main()
