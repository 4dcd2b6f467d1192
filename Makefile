# sac-cli: `make help` lists the targets. Every target sets up .venv first if needed.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
ARGS ?=
# Machines without an NVIDIA driver take the pinned torch (a CPU wheel where one is provided
# locally, as on CI); GPU machines get the regular CUDA build that pyproject's range allows.
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 || echo torch==2.13.0)
EXTRAS ?= dev

STAMP := $(VENV)/.installed-$(EXTRAS)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(if $(TORCH),$(BIN)/pip install '$(TORCH)')
	$(BIN)/pip install -e '.[$(EXTRAS)]'
	touch $@

.PHONY: help install train test test-full test-slurm lint bench gpu-check gpu-wheels clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## set up .venv with sac-cli and its dev tools (TORCH=... to choose a torch build)

train: $(STAMP) ## the paper's run: HalfCheetah-v4, 3M steps, ~7 h on 2 cores; ARGS="env=Pendulum-v1" for minutes
	$(BIN)/sac-train $(ARGS)

test: $(STAMP) ## the default test suite (a few minutes on 2 cores)
	$(BIN)/python -m pytest -q $(ARGS)

test-full: $(STAMP) ## every test, the slow learning checks included
	$(BIN)/python -m pytest -q -m "" $(ARGS)

test-slurm: $(STAMP) ## as root: install and start a single-node SLURM, run the sweep tests on it (~6 min)
	tests/cluster/install.sh
	SAC_CLI_REQUIRE_SLURM=1 $(BIN)/python -m pytest -q -m slurm --durations=0 tests/cluster $(ARGS)

lint: $(STAMP) ## ruff
	$(BIN)/ruff check src tests

bench: $(STAMP) ## throughput benchmark, side by side with Stable-Baselines3 when installed
	$(BIN)/sac-bench $(ARGS)

GPU_OUT ?= outputs
gpu-check: $(STAMP) ## on a CUDA machine: the gpu tests, then sac-bench --device cuda (JSON in GPU_OUT)
	WHEELS= PYTHON=$(BIN)/python OUT=$(GPU_OUT) tests/gpu/check.sh

gpu-wheels: $(STAMP) ## for a GPU machine without network: wheels in .whl/ (then: bash tests/gpu/check.sh there)
	tests/gpu/wheels.sh

clean: ## remove the virtual environment and caches (outputs/ stays)
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info src/*.egg-info
