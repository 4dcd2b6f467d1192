"""pytest's hooks and fixtures for every test: the config schema registered for tests that
compose configs in this process, `gpu` tests skipped without CUDA. Shared helpers live in
tests/helpers/."""

from __future__ import annotations

import pytest
import torch
from helpers.cli import TINY

from sac_cli.config import register_configs

# train.yaml's defaults name the schema: composing in-process needs it in Hydra's ConfigStore.
register_configs()


def pytest_collection_modifyitems(config, items) -> None:
    """`gpu`-marked tests skip on a machine without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_args() -> list[str]:
    return list(TINY)
