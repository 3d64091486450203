# `make test` is the whole check: it builds .venv from pyproject.toml, runs the linter (ruff) and the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?= -q -n auto

# Real weights: ../shared/weights seeds a project-local torchvision cache when it exists;
# without it the demo warns and runs with seeded random weights.
SHARED      ?= ../shared
TORCH_HOME  ?= $(CURDIR)/.cache/torch
export TORCH_HOME

.PHONY: venv test bench bench-codec bench-eval bench-sensitivity bench-perimage bench-grid bench-memory demo weights clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

weights:
	@if [ -d "$(SHARED)/weights" ]; then mkdir -p "$(TORCH_HOME)/hub/checkpoints" && cp -n "$(SHARED)"/weights/*.pth "$(TORCH_HOME)/hub/checkpoints/" 2>/dev/null || true; \
	  echo "weights: $(TORCH_HOME)/hub/checkpoints (export TORCH_HOME=$(TORCH_HOME) to use them outside make)"; \
	else echo "weights: no $(SHARED)/weights here; put torchvision's .pth files in $(TORCH_HOME)/hub/checkpoints"; fi

demo: $(STAMP) weights
	$(BIN)/vcfc demo --out vcfc-demo

# Each benchmark prints a table and writes bench-out/<name>.json.
bench: bench-codec bench-eval bench-sensitivity bench-perimage bench-grid bench-memory

bench-codec: $(STAMP)
	$(BIN)/python benchmarks/bench_codec.py

bench-eval: $(STAMP) weights
	$(BIN)/python benchmarks/bench_eval.py

bench-sensitivity: $(STAMP) weights
	$(BIN)/python benchmarks/bench_sensitivity.py

bench-perimage: $(STAMP) weights
	$(BIN)/python benchmarks/bench_perimage.py

bench-grid: $(STAMP) weights
	$(BIN)/python benchmarks/bench_grid.py

bench-memory: $(STAMP)
	$(BIN)/python benchmarks/bench_memory.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis bench-out vcfc-demo .cache
