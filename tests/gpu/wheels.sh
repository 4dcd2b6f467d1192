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
# Pinned to the versions CI installs (pyproject's ranges), with what they need that the
# GPU image (torch, numpy, scipy, matplotlib, tqdm, absl-py, etils, pytest...) lacks.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$VERSION" \
  --implementation cp "${platforms[@]}" -d .whl \
  "gymnasium==$("$PY" -c 'import gymnasium; print(gymnasium.__version__)')" \
  farama-notifications==0.0.4 \
  "mujoco==$("$PY" -c 'import mujoco; print(mujoco.__version__)')" \
  glfw pyopengl \
  "hydra-core==$("$PY" -c 'import hydra; print(hydra.__version__)')" \
  "omegaconf==$("$PY" -c 'import omegaconf; print(omegaconf.__version__)')"
# omegaconf's parser runtime is published only as a source archive: build its wheel here.
"$PY" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
"$PY" -m pip wheel -q --no-deps -w .whl .
ls -s --block-size=K .whl
echo "carry .whl to the GPU machine and run: bash tests/gpu/check.sh"
