# Two commands on a fresh clone: `make run` (demo pipeline) and `make test`;
# `make test-fast` leaves out the slow tests (end-to-end runs, learning runs).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CORES ?= 2

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: install test test-fast run lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -q --durations=12 tests

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" tests

run: install
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores $(CORES) --rerun-incomplete --configfile config.yaml
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores 1 --configfile config.yaml \
		--report $$($(BIN)/python -m gmmscape.cli where --configfile config.yaml --outdir-only)/report.html
	@$(BIN)/python -m gmmscape.cli where --configfile config.yaml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/mypy gmmscape scripts

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt Snakefile rules

bench: install
	for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) results .snakemake
