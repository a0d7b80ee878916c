# The two commands of the README. Each creates .venv (if missing) and installs what it needs.
#   make run    a real 450-player batch through the local stack, ending in a loss ledger
#   make test   ruff + the whole test suite (starts and stops the emulators itself)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
RUN_ARGS ?= --players 450 --json ledger.json

.PHONY: run test install check-emulators clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[local,infra,dev]'
	@touch $(STAMP)

install: $(STAMP)

check-emulators:
	@$(PY) -m batchline.local.preflight

run: $(STAMP) check-emulators
	$(VENV)/bin/batchline run $(RUN_ARGS)

test: $(STAMP) check-emulators
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

clean:
	-$(VENV)/bin/batchline local down
	rm -rf .batchline .pytest_cache
