"""A whole batch on a local stack whose batch state lives in a named Firestore database and whose
BigQuery location is not US (issue 18 item 4): the functions open the database their environment
names, never `(default)`, and the ledger agrees."""

from __future__ import annotations

import datetime as dt

import pytest
from google.cloud import firestore

from batchline.domain.statuses import CONSOLIDATED
from batchline.flows.ledger import compute
from batchline.layout import BATCHES
from batchline.local.preflight import problems
from batchline.settings import Settings
from tests.stack.conftest import Stack, own_stack

DATABASE = "batchline-named"


@pytest.fixture(scope="module")
def named(tmp_path_factory) -> Stack:
    missing = problems()
    if missing:
        pytest.fail("the local stack cannot start: " + "; ".join(missing), pytrace=False)
    state = tmp_path_factory.mktemp("named-db")
    with own_stack(state, Settings(project="batchline-named", firestore_database=DATABASE, bq_location="EU")) as s:
        yield s


def test_a_batch_runs_on_the_named_database_only(named):
    day = dt.date(2031, 3, 1)
    batch, ledger = named.run(day, 4)
    assert batch["status"] == CONSOLIDATED and ledger.ok, (batch.get("error"), ledger.problems)
    assert named.clients.fs._database == DATABASE
    default = firestore.Client(project="batchline-named")  # the same emulator's (default) database
    assert not default.collection(BATCHES).document(batch["batch_id"]).get().exists, \
        "batch state went to (default), not to the configured database"
    again = compute(named.clients, batch["batch_id"], 0.0)
    assert again.merged_items == 4 and again.main_table_mutating_dml == 1
