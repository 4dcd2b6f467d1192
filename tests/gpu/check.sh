#!/bin/bash
# The GPU check (`make gpu-check` runs it with the project's venv): the gpu tests, then
# sac-bench --device cuda (eager and compiled with CUDA graphs) with JSON in ${OUT:-outputs}.
# On a CUDA machine without network, whose Python already has torch, it first installs the
# wheels that tests/gpu/wheels.sh put in .whl/ (WHEELS=, empty, skips that, as make does).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-outputs}
SITE=${SITE:-/tmp/sac-cli-site}
WHEELS=${WHEELS-.whl}
if [ -n "$WHEELS" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export MUJOCO_GL=${MUJOCO_GL:-egl}
mkdir -p "$OUT"
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || echo "no nvidia-smi") | tee "$OUT/gpu.txt"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' \
  | tee -a "$OUT/gpu.txt"
status=0
"$PY" -m pytest -q -m gpu -p no:cacheprovider --durations=0 tests/gpu 2>&1 \
  | tee "$OUT/gpu-tests.txt" || status=1
"$PY" -m sac_cli.cli.bench --device cuda --threads 1 \
  --json "$OUT/bench-gpu.json" 2>&1 | tee "$OUT/bench-gpu.txt" || status=1
exit $status
