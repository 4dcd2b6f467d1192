#!/bin/bash
# Prepare `make gpu-check` for a GPU machine that cannot reach a package index: download into
# .whl/ (git-ignored) the wheels of what sac-cli needs beyond the machine's own torch and
# scientific stack, and build sac-cli's own wheel. tests/gpu/check.sh installs from there.
#   PYTHON_VERSION=3.12 tests/gpu/wheels.sh      # the GPU machine's Python (default 3.12)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
VERSION=${PYTHON_VERSION:-3.12}
rm -rf .whl && mkdir -p .whl
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
           manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
# The versions installed here (what CI installs within pyproject's ranges), for what the GPU
# image (torch, numpy, scipy, matplotlib, tqdm, absl-py, etils, pytest...) lacks.
pinned() { for name in "$@"; do
  echo "$name==$("$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name")"
done; }
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$VERSION" \
  --implementation cp "${platforms[@]}" -d .whl \
  $(pinned gymnasium farama-notifications mujoco glfw pyopengl hydra-core omegaconf)
# omegaconf's parser runtime is published only as a source archive: build its wheel here.
"$PY" -m pip wheel -q --no-deps -w .whl "$(pinned antlr4-python3-runtime)"
"$PY" -m pip wheel -q --no-deps -w .whl .
ls -s --block-size=K .whl
echo "carry .whl to the GPU machine and run: bash tests/gpu/check.sh"
