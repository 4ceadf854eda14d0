# ganaug: the README's commands. The venv is made here; nothing hand-installed is assumed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run worker test test-slow test-gpu bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)          ## embedded mode: API + worker, SQLite, filesystem broker
	$(BIN)/ganaug serve

worker: $(STAMP)
	$(BIN)/ganaug worker

# Tiny test networks run faster single-threaded than with threads fighting over 2 cores.
test: $(STAMP)         ## fast tier (slow and gpu tests deselected)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest

test-slow: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m slow

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -m gpu

bench: $(STAMP)
	$(BIN)/python benchmarks/train_defaults.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
