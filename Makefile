# Every target that needs the environment creates it first (uv + the committed uv.lock),
# so on a fresh machine `make train` or `make test` alone sets up and runs.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ovo-installed
export WANDB_MODE ?= offline

.PHONY: install train demo test test-slow test-all lint format docs docs-serve bench repro clean gpu-wheels gpu-check

$(STAMP): pyproject.toml uv.lock
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

install: $(STAMP)  ## create .venv from uv.lock

train: $(STAMP)  ## the main job: quickstart supernet training (nano space, digits) on CPU
	$(PY) -m ovo.train experiment=quickstart $(ARGS)

demo: $(STAMP)  ## train -> search -> evaluate -> export, end to end
	$(PY) -m ovo.demo $(ARGS)

test: $(STAMP)  ## the default (fast) test suite
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)  ## only the slow tests (kill -9 faults, multirun+DDP, notebooks, full CIFAR-10)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-all: $(STAMP)  ## every test, slow ones (real data, notebooks) included
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check src tests bench studies
	$(PY) -m ruff format --check src tests bench studies
	$(VENV)/bin/lint-imports  # the layer order in pyproject.toml
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet --site-dir site

format: $(STAMP)
	$(PY) -m ruff check --fix src tests bench studies
	$(PY) -m ruff format src tests bench studies

docs: $(STAMP)  ## the docs site (docs/*.md + the API reference from the docstrings) -> site/
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

docs-serve: $(STAMP)  ## the docs site, served live at http://127.0.0.1:8000 (rebuilt on save)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

bench: $(STAMP)  ## speed/memory ratios, supernet vs static timm models (prints a table + JSON)
	$(PY) bench/run.py $(ARGS)

# The real CIFAR-10 JPEG copy (see its README); unzipped once where the imagefolder preset reads.
CIFAR10_ZIP ?= ../shared/data/cifar10/cifar10_jpg.zip
export OVO_DATA_DIR ?= $(HOME)/.cache/ovo-data

repro: $(STAMP)  ## does online distillation help? 4 methods on real CIFAR-10 (~1.3 h, 2 cores)
	@test -d $(OVO_DATA_DIR)/cifar10/train || { \
	  test -f $(CIFAR10_ZIP) || { echo "ovo: error: $(CIFAR10_ZIP) not found; set CIFAR10_ZIP=<path to cifar10_jpg.zip>"; exit 2; }; \
	  echo "unzipping $(CIFAR10_ZIP) into $(OVO_DATA_DIR)/cifar10"; \
	  $(PY) -m zipfile -e $(CIFAR10_ZIP) $(OVO_DATA_DIR)/cifar10; }
	$(PY) studies/repro_cifar10.py $(ARGS)

# A GPU machine lent with no network (../shared/NOTES.md): bring what its image lacks, then one
# command checks it under a time budget (bench/gpu_check.py, docs/performance/gpu.md;
# `make gpu-check ARGS=--help` lists the stages and their seconds).
GPU_WHEELS := .gpu-carry/wheels
GPU_PY := $(if $(wildcard $(PY)),$(PY),$(PYTHON))

gpu-wheels:  ## here (online): wheels the GPU image lacks -> .gpu-carry/wheels, CIFAR-10 -> .gpu-carry/data
	@mkdir -p $(GPU_WHEELS) .gpu-carry/data
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation py \
	  --abi none --platform any -d $(GPU_WHEELS) hydra-core==1.3.8 omegaconf==2.3.1 pytest==9.2.0 iniconfig==2.3.1 pluggy==1.7.0
	$(PYTHON) -m pip wheel -q --no-deps -w $(GPU_WHEELS) antlr4-python3-runtime==4.9.3  # no wheel on PyPI
	@test -f .gpu-carry/data/cifar10_jpg.zip || ! test -f $(CIFAR10_ZIP) || cp $(CIFAR10_ZIP) .gpu-carry/data/
	$(GPU_PY) bench/gpu_check.py --pack  # the default one-command check (core); train: --stages env train

gpu-check:  ## on a GPU machine: env, 224px bench rows, compile, timm anchor, CUDA tests in --budget s (480)
	$(GPU_PY) bench/gpu_check.py $(ARGS)

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache bench/results wandb
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
