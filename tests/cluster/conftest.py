"""The cluster tests' SLURM: one single-node cluster for the session (slurm_cluster.py).

Where SLURM is not installed they skip, saying why; `make test-slurm` sets
SAC_CLI_REQUIRE_SLURM=1, so that there a cluster that does not come up fails them."""

from __future__ import annotations

import os

import pytest
from slurm_cluster import SlurmCluster, missing


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    why = missing()
    required = os.environ.get("SAC_CLI_REQUIRE_SLURM") == "1"
    if why is not None:
        if required:
            pytest.fail(f"SAC_CLI_REQUIRE_SLURM=1 but no SLURM test cluster: {why}")
        pytest.skip(f"needs a single-node SLURM test cluster: {why}")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    try:
        yield cluster
    finally:
        cluster.stop()
