# Set-up and the two jobs a new user needs: `make run` (the default benchmark suite) and `make test`.
# Everything installs into .venv; llama-cpp-python compiles llama.cpp from source once (5-10 min on
# 2 cores), after which pip's wheel cache makes reinstalls take seconds.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tritbench-installed
# The multimodal library is of no use to a benchmark and doubles the build time. The CPU's instruction
# sets: -march=native, except on CPUs with AMX (see backends/llamacpp/cpu-args.sh).
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF $(shell sh backends/llamacpp/cpu-args.sh)
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
# pip's wheel cache does not key wheels on CMAKE_ARGS: one cache per set of arguments, so that a wheel
# built with other instruction sets is never reused.
PIP_CACHE := $(HOME)/.cache/tritbench/pip-$(shell echo "$(CMAKE_ARGS)" | cksum | cut -d' ' -f1)

# The onnxruntime backend's custom op, compiled with the system compiler.
ONNX_LIB := backends/onnx/lib/libtritbench_ternary.so
# The read-bandwidth probe (bench/measure/bandwidth.py falls back to a slower numpy probe without it).
STREAM_LIB := bench/lib/libtritbench_stream.so

.PHONY: run test test-unit test-integration test-system install lint clean

run: $(STAMP) $(ONNX_LIB) $(STREAM_LIB)
	$(BIN)/bench run $(ARGS)

test: $(STAMP) $(ONNX_LIB) $(STREAM_LIB)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# One layer of the suite (tests/conftest.py's LAYERS table says which module is in which): unit runs in
# seconds; integration runs `bench` and llama.cpp/onnxruntime for real; system needs a browser, qemu, objdump.
test-unit: $(STAMP) $(ONNX_LIB) $(STREAM_LIB)
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

test-integration: $(STAMP) $(ONNX_LIB) $(STREAM_LIB)
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

test-system: $(STAMP) $(ONNX_LIB) $(STREAM_LIB)
	$(BIN)/python -m pytest -m system $(PYTEST_ARGS)

$(ONNX_LIB): $(wildcard backends/onnx/csrc/*.c backends/onnx/csrc/*.h) backends/onnx/csrc/Makefile
	$(MAKE) -C backends/onnx/csrc

$(STREAM_LIB): bench/csrc/stream_read.c bench/csrc/Makefile
	$(MAKE) -C bench/csrc

lint: $(STAMP)
	$(BIN)/ruff check .

install: $(STAMP) $(ONNX_LIB) $(STREAM_LIB)

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "python3 -m venv failed: installing Debian's python3-venv"; \
	    apt-get update && apt-get install -y python3-venv && $(PYTHON) -m venv --clear $(VENV); \
	  else \
	    echo "error: python3 -m venv failed; install python3-venv (sudo apt-get install python3-venv)"; exit 1; \
	  fi; }
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install --cache-dir "$(PIP_CACHE)" -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info
	$(MAKE) -C backends/onnx/csrc clean
	$(MAKE) -C bench/csrc clean
