# Two commands: `make demo` (the main job, offline) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# LiteLLM's proxy, for tests/test_litellm.py, in an environment of its own (its dependencies are not ours)
LITELLM := .venv-litellm/bin/litellm

.PHONY: test demo lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: its CPU build lies on this machine's disk, while a bare `torch`
# requirement resolved from scratch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check labelmill tests benchmarks
	$(BIN)/ruff format --check labelmill tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

$(LITELLM): pyproject.toml
	$(PYTHON) -m venv .venv-litellm
	.venv-litellm/bin/pip install --quiet '.[litellm]'
	touch $(LITELLM)

.venv-litellm: $(LITELLM)

unit: $(STAMP) $(LITELLM)
	$(BIN)/pytest -q

test: lint typecheck unit

demo: $(STAMP)
	$(BIN)/python -m labelmill.demo

bench: $(STAMP)
	$(BIN)/python benchmarks/cache.py

clean:
	rm -rf $(VENV) .venv-litellm .mypy_cache .pytest_cache .ruff_cache demo-out
