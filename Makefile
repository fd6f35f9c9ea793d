# The two set-up commands: `make test` and `make bench`. Both create .venv when missing (Python
# 3.11, torch 2.14.1 and the dev tools), build the extension against that torch, then run.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEPS_STAMP := $(VENV)/.deps-installed
PYTEST_ARGS ?=

.PHONY: venv build test test-slow lint fuzz sanitize sanitize-simt bench bench-quick wheel gpu-check clean

venv: $(DEPS_STAMP)

$(DEPS_STAMP): requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Builds the CPU extension, and the CUDA one when FUSEDLSTM_CUDA (auto by default) finds CUDA.
build: $(DEPS_STAMP)
	$(PIP) install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .

# The default suite; the multi-process tests marked slow are `make test-slow` (CI runs both).
test: build
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

test-slow: build
	$(PY) -m pytest tests -m slow $(PYTEST_ARGS)

# 10,000+ fuzz cases (5,000 per fuzz test); `make test` runs a fixed-seed slice of 150 each.
fuzz: build
	FUZZ_EXAMPLES=5000 $(PY) -m pytest tests/fuzz -q -s

# The SIMT emulation's self-test (the CUDA kernels' sources on CPU threads) under
# ThreadSanitizer: it must pass clean, and each planted missing barrier (1: a __syncthreads(),
# 2: a grid barrier, 3: the persistent kernels' barrier between steps) must make
# ThreadSanitizer fail it.
sanitize-simt: $(DEPS_STAMP)
	$(PY) tests/simt/selftest_build.py --tsan
	$(PY) tests/simt/selftest_build.py --tsan --plant 1
	$(PY) tests/simt/selftest_build.py --tsan --plant 2
	$(PY) tests/simt/selftest_build.py --tsan --plant 3

# The CPU extension under AddressSanitizer + UndefinedBehaviorSanitizer, and the test suite run
# with the sanitizer runtimes preloaded (torch and Python themselves are not instrumented).
# Any report fails the run. The next `make test` rebuilds the normal extension.
sanitize: sanitize-simt
	FUSEDLSTM_SANITIZE=1 $(PIP) install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(PY) -m pytest tests -q -x -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

lint: $(DEPS_STAMP)
	$(VENV)/bin/ruff check fusedlstm tests bench examples setup.py .ci

bench: build
	$(PY) bench/run.py

bench-quick: build
	$(PY) bench/run.py --quick

# On a machine with an NVIDIA GPU: build for its arch, CUDA tests (GPU vs cuDNN and vs the
# emulated kernels), kernel resources, bench/results/report-gpu.md. A no-op without a GPU.
# Uses .venv when there is one, else the python3 on PATH (a GPU machine may have torch already).
gpu-check:
	$(if $(wildcard $(PY)),$(PY),python3) bench/gpu_check.py

# Compiled afresh in build/wheel, so that the log shows every compile (CI checks its warnings).
wheel: $(DEPS_STAMP)
	rm -rf build/wheel
	FUSEDLSTM_BUILD_DIR=build/wheel $(PIP) wheel $(or $(PIP_WHEEL_FLAGS),--quiet) --disable-pip-version-check --no-build-isolation --no-deps -w dist .

clean:
	rm -rf build dist *.egg-info fusedlstm/*.so fusedlstm/_build_info.py
