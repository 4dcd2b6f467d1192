#!/bin/bash
# `make gpu-check` without network: on a CUDA machine whose Python already has torch, install
# the wheels that tests/gpu/wheels.sh put in .whl/, run the gpu tests, then
# sac-bench --device cuda (eager and compiled with CUDA graphs) with JSON in ${OUT:-outputs}.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-outputs}
SITE=${SITE:-/tmp/sac-cli-site}
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" .whl/*.whl
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" MUJOCO_GL=${MUJOCO_GL:-egl}
mkdir -p "$OUT"
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "no nvidia-smi") | tee "$OUT/gpu.txt"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' \
  | tee -a "$OUT/gpu.txt"
status=0
"$PY" -m pytest -q -m gpu -p no:cacheprovider --durations=0 tests/gpu 2>&1 \
  | tee "$OUT/gpu-tests.txt" || status=1
"$PY" -m sac_cli.cli.bench --device cuda --threads 1 --no-sb3 --no-sbx \
  --json "$OUT/bench-gpu.json" 2>&1 | tee "$OUT/bench-gpu.txt" || status=1
exit $status
