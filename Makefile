# qdistill: two commands from a fresh machine.
#   make demo   set everything up, then run the main job on the embedded default data
#   make test   set everything up, then run the test suite (what CI runs)
# Both create/reuse the virtual environment in .venv; nothing is installed by hand.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.qdistill-installed

.PHONY: setup demo test lint clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	$(BIN)/qdistill reproduce paper-v1 --quick --head paper

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean-venv:
	rm -rf $(VENV)
