# The two commands a newcomer needs: `make run` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
INSTALLED_DEV := $(VENV)/.installed-dev

.PHONY: run test proto proto-check lint clean bench soak chaos

run: $(INSTALLED)  ## start the database and all four services on loopback
	$(BIN)/samhandling up

test: $(INSTALLED_DEV)  ## run the whole test suite (unit, contract, end to end)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(INSTALLED_DEV)  ## the mesh against its floor (issue 7): table + bench-results.json; QUICK=1 for a short run
	$(BIN)/python -m tests.bench $(if $(filter 1 yes true,$(QUICK)),--quick) $(BENCH_ARGS)

chaos: $(INSTALLED_DEV)  ## only the fault tests (issue 8; also part of `make test`): kills, database restart, slow database under load
	$(BIN)/python -m pytest tests/faults $(PYTEST_ARGS)

soak: $(INSTALLED_DEV)  ## the mesh under mixed load for SOAK_SECONDS (default 600; issue 8): RSS, fds, connections, errors; not in CI
	$(BIN)/python -m tests.soak --seconds $(or $(SOAK_SECONDS),600) $(SOAK_ARGS)

proto: $(INSTALLED_DEV)  ## regenerate the Python code for protos/
	$(BIN)/python -m services.codegen

proto-check: $(INSTALLED_DEV)
	$(BIN)/python -m services.codegen --check
	cd protos && ../$(BIN)/buf lint

lint: $(INSTALLED_DEV)
	$(BIN)/ruff check services tests
	cd protos && ../$(BIN)/buf lint

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info build

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(INSTALLED_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(INSTALLED)
