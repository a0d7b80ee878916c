"""Fixtures: the real Pulumi program run offline under pulumi.runtime.set_mocks, once per stack file.

Each run is ~0.2 s after the first import, so the session stays a few seconds long."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra import harness  # noqa: E402

# The prod stack file names a Slack channel; its token is a secret that only exists encrypted in a real
# stack, so the tests supply one as `pulumi config set --secret` would.
PROD_SECRETS = {"slack_token": "xoxb-test-token"}


@pytest.fixture(scope="session")
def dev_raw() -> dict:
    return harness.load_stack_config("dev")


@pytest.fixture(scope="session")
def prod_raw() -> dict:
    return harness.load_stack_config("prod")


@pytest.fixture(scope="session")
def dev_run() -> harness.StackRun:
    return harness.run_stack("dev")


@pytest.fixture(scope="session")
def prod_run() -> harness.StackRun:
    return harness.run_stack("prod", secrets=PROD_SECRETS)


@pytest.fixture(scope="session")
def prod_emergency_run(prod_raw) -> harness.StackRun:
    raw = copy.deepcopy(prod_raw)
    raw["emergency"] = True
    return harness.run_program(raw, stack="prod", secrets=PROD_SECRETS)


@pytest.fixture(params=["dev", "prod", "prod-emergency"])
def any_run(request, dev_run, prod_run, prod_emergency_run) -> harness.StackRun:
    return {"dev": dev_run, "prod": prod_run, "prod-emergency": prod_emergency_run}[request.param]


def pytest_configure(config):
    # pulumi_gcp warns about its own deprecated aliases when its modules load lazily
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_gcp")
