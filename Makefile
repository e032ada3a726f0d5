# gpugrad: `make demo` trains the GPT example, `make test` runs the test suite.
# Both create .venv and install what they need on a fresh clone.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The GPU machines have torch, cupy and pytest in their system python and no network.
GPU_PYTHON ?= python3

.PHONY: demo digits test test-gpu test-emulated kernels-emulated fuzz bench bench-gpu bench-quick kernels-check soak clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.demo: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[example]'
	touch $@

$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[test,example,kernel-check,tensorboard]'
	touch $@

# the main job: a GPT on the Python standard library (the small one on an NVIDIA GPU, else the tiny one)
demo: $(VENV)/.demo
	bash scripts/demo.sh

digits: $(VENV)/.demo
	$(PY) examples/classics.py
	$(PY) examples/train_digits.py

test: $(VENV)/.test
	$(VENV)/bin/ruff check .
	$(PY) scripts/check_imports.py
	$(PY) -m pytest -q

# On a GPU machine: the CUDA half of the suite against torch CUDA, from the tree.
test-gpu:
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -m pytest -q -m cuda -p no:cacheprovider

# No GPU: the same CUDA half with gpugrad's "cuda" simulated on the CPU by the CUDA emulator cuemu
# (the real kernels; torch's references on the CPU). Finds GPU-path bugs, not speed. GPUGRAD_CUEMU names
# its folder (tests/emulator.py reads the same setting); by default the team's, beside the checkout.
GPUGRAD_CUEMU ?= $(abspath $(CURDIR)/../shared/tools/cuemu)
export GPUGRAD_CUEMU
test-emulated: $(VENV)/.test
	PYTHONPATH=$(GPUGRAD_CUEMU)/autoinstall $(PY) -m pytest -q -m cuda -p no:cacheprovider

# The emulator's kernel matrix (its run.py: each fused kernel through gpugrad/cuda/fused.py over shapes, layouts and
# special values; 7,354 cases, RUN_ARGS="--quick" for 1,582) with the CuPy calls its minimal stand-in lacks supplied
# by a developer tool (scripts/dev_cuemu_run.py; the library has no code for the emulator)
kernels-emulated: $(VENV)/.test
	$(PY) scripts/dev_cuemu_run.py $(RUN_ARGS)

# The differential fuzzer's large run against torch: 50,000 cases (make test runs 3,000); FUZZ_SEED=n replays a run,
# FUZZ_CASES=n sizes it; a failing case prints as entry/form:seed (python tests/differential.py --case ... replays it)
FUZZ_CASES ?= 50000
fuzz: $(VENV)/.test
	$(PY) tests/differential.py --cases $(FUZZ_CASES) $(if $(FUZZ_SEED),--seed $(FUZZ_SEED))

bench: $(VENV)/.test
	$(PY) -m benchmarks

# On a GPU machine whose system python has torch CUDA and cupy (no venv, no network).
bench-gpu:
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -m benchmarks

bench-quick: $(VENV)/.test
	$(PY) -m benchmarks --quick

# memory over 10,000 steps of the GPT example on the CPU (RSS, live objects, graph nodes); about an hour
soak: $(VENV)/.test
	$(PY) scripts/soak_memory.py

kernels-check: $(VENV)/.test
	$(PY) -m pytest -q tests/test_kernels_compile.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
