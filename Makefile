# The two commands of the README. Each creates .venv (if missing) and installs what it needs.
#   make run    a real 450-player batch through the local stack, ending in a loss ledger
#   make test   ruff + the whole test suite (starts and stops the emulators itself)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
RUN_ARGS ?= --players 450 --json ledger.json
# Google's SQL analyzer (ZetaSQL local service) that tests/sql judges every statement with; see
# docs/sql-validation.md. The version is pinned here; changing it reinstalls.
ZETASQL_VERSION := 1.13.0
ZETASQL_DIR := .zetasql
ZETASQL_STAMP := $(ZETASQL_DIR)/.installed-$(ZETASQL_VERSION)

.PHONY: run test install zetasql check-emulators clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[local,infra,dev]'
	@touch $(STAMP)

install: $(STAMP)

$(ZETASQL_STAMP):
	@command -v npm >/dev/null || { echo "make zetasql: npm is required (Debian: apt-get install npm)" >&2; exit 1; }
	rm -rf $(ZETASQL_DIR)
	npm install --prefix $(ZETASQL_DIR) --no-save --no-audit --no-fund --ignore-scripts \
		@fivetrandevelopers/zetasql@$(ZETASQL_VERSION)
	@touch $(ZETASQL_STAMP)

zetasql: $(ZETASQL_STAMP)

check-emulators:
	@$(PY) -m batchline.local.preflight

run: $(STAMP) check-emulators
	$(VENV)/bin/batchline run $(RUN_ARGS)

test: $(STAMP) $(ZETASQL_STAMP) check-emulators
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

clean:
	-$(VENV)/bin/batchline local down
	rm -rf .batchline .pytest_cache
