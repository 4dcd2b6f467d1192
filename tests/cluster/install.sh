#!/usr/bin/env bash
# The packages of the SLURM test cluster (Debian 12: SLURM 22.05, munge, MariaDB), installed
# with apt-get when missing and this runs as root; tests/cluster/slurm_cluster.py starts them.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "tests/cluster/install.sh: SLURM is not installed; as root on Debian/Ubuntu this installs it" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  slurm-wlm slurmdbd munge mariadb-server mariadb-client >/dev/null
