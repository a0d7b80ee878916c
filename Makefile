# The two commands of the README. Each creates .venv (if missing) and installs exactly uv.lock.
#   make run    a real 450-player batch through the local stack, ending in a loss ledger
#   make test   ruff + the whole test suite (starts and stops the emulators itself)
# Dependencies: uv.lock is the one lock (uv, pinned in tools/uv-requirements.txt). `make lock` after an
# edit of pyproject.toml, `make upgrade` to move every pin to today's releases on purpose; both
# regenerate functions/requirements.txt and policy/requirements.txt from the lock.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed-stamp
EXTRAS := --extra cli --extra local --extra infra --extra dev
# uv never downloads a Python of its own here, and installs only what the lock names, hash-checked.
UV_ENV := UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=$(VENV)
RUN_ARGS ?= --players 450 --json ledger.json
# Google's SQL analyzer (ZetaSQL local service) that tests/sql judges every statement with; see
# docs/sql-validation.md. Locked with its npm dependencies in tools/zetasql/package-lock.json (npm ci).
ZETASQL_DIR := .zetasql
ZETASQL_STAMP := $(ZETASQL_DIR)/.installed

.PHONY: run test install bench-install lock upgrade requirements uv zetasql check-emulators clean

# uv itself, from PyPI with pip's hash-checking mode (tools/uv-requirements.txt)
$(UV): tools/uv-requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r tools/uv-requirements.txt
	@touch $(UV)

uv: $(UV)

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV_ENV) $(UV) sync --locked --python $(PY) $(EXTRAS)
	@touch $(STAMP)

install: $(STAMP)

# bench/ needs matplotlib too (~50 MB, so `make install` leaves it out)
bench-install: $(UV)
	$(UV_ENV) $(UV) sync --locked --python $(PY) $(EXTRAS) --extra bench
	@touch $(STAMP)

# Move the lock: `lock` resolves what pyproject.toml now asks for, keeping every other pin; `upgrade`
# takes the newest releases pyproject.toml allows. Run the tests after either, and commit the lock
# with the regenerated requirements.
lock: $(UV)
	$(UV_ENV) $(UV) lock
	$(MAKE) requirements

upgrade: $(UV)
	$(UV_ENV) $(UV) lock --upgrade
	$(MAKE) requirements

# Generated from uv.lock, never edited by hand (tests/infra/test_lock.py compares them with the lock).
requirements: $(UV)
	$(UV_ENV) $(UV) export --frozen --no-emit-project --no-default-groups --format requirements-txt \
		-o functions/requirements.txt -q
	$(UV_ENV) $(UV) export --frozen --no-emit-project --only-group policy --format requirements-txt \
		-o policy/requirements.txt -q

$(ZETASQL_STAMP): tools/zetasql/package.json tools/zetasql/package-lock.json
	@command -v npm >/dev/null || { echo "make zetasql: npm is required (Debian: apt-get install npm)" >&2; exit 1; }
	rm -rf $(ZETASQL_DIR) && mkdir -p $(ZETASQL_DIR)
	cp tools/zetasql/package.json tools/zetasql/package-lock.json $(ZETASQL_DIR)/
	npm ci --prefix $(ZETASQL_DIR) --no-audit --no-fund --ignore-scripts
	@touch $(ZETASQL_STAMP)

zetasql: $(ZETASQL_STAMP)

check-emulators:
	@$(PY) -m batchline.local.preflight

run: $(STAMP) check-emulators
	$(VENV)/bin/batchline run $(RUN_ARGS)

test: $(STAMP) $(ZETASQL_STAMP) check-emulators
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

clean:
	-$(VENV)/bin/batchline local down
	rm -rf .batchline .pytest_cache
