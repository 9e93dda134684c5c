# Quick start: `make demo` (set up and run the demo graph), `make test` (set up and test).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint bench gpu-wheels clean

$(BIN)/vidgraph: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,ray]" "$(TORCH)"
	touch $@

demo: $(BIN)/vidgraph
	$(BIN)/vidgraph run graphs/demo.yaml

test: $(BIN)/vidgraph
	$(BIN)/ruff check pipeline plugins tests bench run.py
	$(BIN)/mypy pipeline
	$(BIN)/python -m pytest -q

bench: $(BIN)/vidgraph
	$(BIN)/python bench/transcode.py

# The packages a lent GPU machine's image lacks (it has CUDA torch, OpenCV, numba, pytest and
# Python 3.12, and no network), for bench/gpu_check.sh to install there from .wheels/.
gpu-wheels: $(BIN)/vidgraph
	$(BIN)/pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  -d .wheels av pydantic mtcnn websocket-client pillow starlette uvicorn hypothesis

clean:
	rm -rf $(VENV) out .wheels
