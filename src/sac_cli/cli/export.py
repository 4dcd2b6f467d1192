"""`sac-export`: a checkpoint's deterministic policy as an ONNX or TorchScript file, with a
JSON of its spaces, under <run dir>/export/ (or out=)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from sac_cli.agents.policy import DeterministicPolicy
from sac_cli.cli.export_config import ExportCommandConfig, ExportFormat, register_export_configs
from sac_cli.cli.loading import (
    checkpoint_command,
    env_id_to_evaluate,
    load_policy,
    require_checkpoint,
)
from sac_cli.envs.make import make_env
from sac_cli.errors import UserError
from sac_cli.files import atomic_write, atomic_write_text
from sac_cli.training import checkpoint as ckpt

PROG = "sac-export"
EXPORT_DIR = "export"
SUFFIX = {ExportFormat.onnx: ".onnx", ExportFormat.torchscript: ".pt"}
ONNX_PACKAGES = "pip install 'sac-cli[export]' (or 'onnx>=1.16,<2' 'onnxscript>=0.5,<1')"

register_export_configs()


def policy_bytes(policy: DeterministicPolicy, obs_dim: int, fmt: ExportFormat) -> bytes:
    example = torch.zeros(2, obs_dim)
    with torch.no_grad(), _quiet():
        if fmt == ExportFormat.torchscript:
            buffer = io.BytesIO()
            torch.jit.save(torch.jit.trace(policy, example), buffer)
            return buffer.getvalue()
        try:
            import onnxscript  # noqa: F401  (torch.onnx's exporter writes through it)
        except ImportError:
            raise UserError(f"format=onnx needs the ONNX exporter: {ONNX_PACKAGES}") from None
        program = torch.onnx.export(
            policy, (example,), input_names=["obs"], output_names=["action"],
            dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False,
        )  # fmt: skip
        return program.model_proto.SerializeToString()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.onnx's exporter logs what it skips (torchvision's operators) and warns about
    internals: nothing a user acts on."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def run_export(cfg: ExportCommandConfig) -> dict[str, Any]:
    path = ckpt.resolve_checkpoint(require_checkpoint(cfg.checkpoint)).resolve()
    out_dir = (
        Path(cfg.out).expanduser().resolve() if cfg.out else ckpt.run_dir_of(path) / EXPORT_DIR
    )
    state = ckpt.load(path, map_location=torch.device("cpu"))
    env_id = env_id_to_evaluate(cfg.env_id, state, path, PROG)
    ckpt.check_writable(out_dir)  # before any work
    env = make_env(env_id)
    try:
        agent = load_policy(state, path, env, torch.device("cpu"), env_id)
        bounds = env.unwrapped.action_space  # the environment's own, before rescaling
        obs_shape = list(env.observation_space.shape)
    finally:
        env.close()
    low, high = (torch.as_tensor(b, dtype=torch.float32) for b in (bounds.low, bounds.high))
    policy = DeterministicPolicy(agent.actor, low, high, agent.obs_normalizer)
    policy = policy.eval().requires_grad_(False)
    step = int(state["step"])
    name = f"policy-{path.stem}-step-{step}"
    target = out_dir / f"{name}{SUFFIX[cfg.format]}"
    content = policy_bytes(policy, int(state["obs_dim"]), cfg.format)
    atomic_write(target, "wb", lambda handle: handle.write(content))
    spaces = {
        "format": cfg.format.value,
        "file": target.name,
        "checkpoint": str(path),
        "step": step,
        "env_id": env_id,
        "input": {"name": "obs", "shape": ["batch", *obs_shape], "dtype": "float32"},
        "output": {
            "name": "action",
            "shape": ["batch", int(state["act_dim"])],
            "dtype": "float32",
            "low": low.tolist(),
            "high": high.tolist(),
        },
        "policy": "deterministic: tanh of the Gaussian policy's mean, mapped from [-1, 1] "
        "to [low, high]",
        "torch": torch.__version__,
    }
    meta = target.with_name(f"{target.name}.json")
    atomic_write_text(json.dumps(spaces, indent=2) + "\n", meta)
    print(f"wrote {target} and {meta.name}")
    return spaces


main = checkpoint_command("export", PROG, run_export)


if __name__ == "__main__":
    main()
