# Two commands on a fresh machine:
#   make demo   -> builds .venv, installs edgequant with every runtime, runs `edgequant demo`
#   make test   -> same set-up, then lint, type check and the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: demo test test-fast lint typecheck install clean browser emulator

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch pinned first so nothing pulls a CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgequant demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium could not be installed; browser tests will be skipped"

# qemu-user runs the runtimes' real AVX2 kernels on any x86-64 CPU (tests/quant/test_emulated_isa.py)
emulator:
	@command -v qemu-x86_64 >/dev/null 2>&1 || [ "$$(uname -m)" != x86_64 ] || (apt-get update -qq && apt-get install -y -qq qemu-user >/dev/null) || echo "qemu-user could not be installed; emulated-CPU tests will be skipped"

test: $(STAMP) browser emulator lint typecheck
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# the day-to-day tier: everything but the tests marked slow (real sweeps, clusters, compliance runs)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
