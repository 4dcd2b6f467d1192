"""The schema of `sac-export` (conf/export.yaml), registered in Hydra's ConfigStore."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from hydra.core.config_store import ConfigStore


class ExportFormat(str, Enum):
    onnx = "onnx"  # for onnxruntime and the runtimes that read ONNX
    torchscript = "torchscript"  # for torch.jit.load, C++ libtorch included


@dataclass
class ExportCommandConfig:
    # A checkpoint file, or a run directory of sac-train (its checkpoints/last.pt).
    checkpoint: str | None = None
    format: ExportFormat = ExportFormat.onnx
    # Where policy-<checkpoint>-step-<step>.{onnx,pt} and its .json go; null: <run dir>/export/.
    out: str | None = None
    # null: the checkpoint's environment (its action bounds and observation size).
    env_id: str | None = None


def register_export_configs() -> None:
    ConfigStore.instance().store(name="export_schema", node=ExportCommandConfig)

