# Two commands on a fresh machine: `make demo` (build the built-in sample and load it back) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch: the 2.13.0 CPU wheel (an unpinned torch would pull a multi-GB CUDA build)
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[eval,ray,test,space,translate,dialogues,train]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/arabic-prompts demo --out out/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=30 tests

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_build.py --prompts 1000000

clean:
	rm -rf out
