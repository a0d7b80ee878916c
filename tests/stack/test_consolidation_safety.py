"""Races and recoveries around consolidation, on the real stack (each found in review, each fixed):
a stall check during dispatch, a failed consolidation retried by an operator, a redelivered MERGE,
a forced re-run during consolidation, a late dead letter, an untrusted message id."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from google.cloud import bigquery

from batchline.adapters import merge as consolidate
from batchline.domain import ids
from batchline.domain.messages import ConsolidationRequest, encode
from batchline.domain.runs import Item
from batchline.domain.statuses import (
    CONSOLIDATED,
    CONSOLIDATING,
    CONSOLIDATION_FAILED,
    DISPATCH_FAILED,
    DISPATCHING,
    SUPERSEDED,
)
from batchline.flows.ledger import compute, main_table_dml_since
from batchline.layout import ITEMS, REJECTED


def test_stall_check_never_consolidates_a_batch_still_being_dispatched(stack, day):
    items = [Item("player_0000", "g1"), Item("player_0001", "g1")]
    batch_id = ids.new_batch_id(day)
    stack.store.create_batch(batch_id, day, items, force=True, faults=None, dispatch_token="test")
    # The start is mid-way: the batch is claimed, its item documents not written yet.
    for it in items:
        stack.store.batch_ref(batch_id).collection(ITEMS).document(it.item_id).delete()
    assert [r for r in stack.stall_check(stall_minutes=30) if r["batch_id"] == batch_id] == []
    assert stack.store.get_batch(batch_id)["status"] == DISPATCHING, "not consolidated with nothing in it"
    # The start died (its dispatch lease lapsed) and the date's schedule no longer has these items:
    # the dispatch cannot be resumed, so the batch fails loudly instead of blocking its date.
    stack.store.batch_ref(batch_id).update({"dispatch_lease_until": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)})
    reports = [r for r in stack.stall_check(stall_minutes=30) if r["batch_id"] == batch_id]
    assert reports == [{"batch_id": batch_id, "action": "dispatch_not_resumable"}]
    assert stack.store.get_batch(batch_id)["status"] == DISPATCH_FAILED


def test_an_operator_can_reconsolidate_a_failed_batch_from_its_kept_table(stack, day):
    batch, _ = stack.run(day, 4, faults="zero_merge=1")
    batch_id = batch["batch_id"]
    assert batch["status"] == CONSOLIDATION_FAILED
    stack.store.set_batch_fields(batch_id, {"faults": None})  # the cause is fixed
    stack.clients.publish("consolidation", encode(ConsolidationRequest(batch_id=batch_id, reason="manual")))
    batch = stack.wait_for(batch_id, CONSOLIDATED)
    assert batch["consolidation_generation"] == 1 and batch["merged_items"] == 4
    ledger = compute(stack.clients, batch_id, 0)
    assert ledger.ok and ledger.staging_tables_left == 0 and ledger.merged_rows == 20
    assert main_table_dml_since(stack.clients, batch["created_at"]) == 2  # the 0-row MERGE, then the retry


def test_a_redelivered_consolidation_waits_for_its_merge_instead_of_running_another(stack, schema_settings, day):
    bq, s = stack.clients.bq, schema_settings
    batch_id = ids.new_batch_id(day)
    schema = list(bq.get_table(s.main_table_id).schema)
    manifest = {f"player_{n:04d}": stack.stage(s, batch_id, day, f"player_{n:04d}", schema) for n in range(3)}
    first = stack.merge_pinned(s, batch_id, day, manifest)
    # same batch, same generation, same pin: a redelivery finds the job and waits for it
    again = consolidate.merge_staging(bq, s, batch_id, day, first.pin, len(manifest))
    assert again.job_id == first.job_id and again.affected_rows == first.affected_rows == 15
    merges = [j for j in bq.list_jobs(all_users=True, max_results=5000)
              if getattr(j, "statement_type", None) == "MERGE" and batch_id in (j.query or "")]
    assert len(merges) == 1


def test_force_is_refused_while_a_batch_is_consolidating(stack, day):
    stack.seed(day, 2)
    first = stack.start(day).json()["batch_id"]
    stack.wait(first)
    second = stack.start(day, force=True).json()["batch_id"]
    stack.store.transition(second, [stack.store.get_batch(second)["status"]], {"status": CONSOLIDATING})
    refused = stack.start(day, force=True)
    assert refused.status_code == 409 and refused.json()["status"] == CONSOLIDATING
    stack.store.transition(second, [CONSOLIDATING], {"status": SUPERSEDED})


def test_a_late_consolidation_dead_letter_leaves_a_consolidated_batch_alone(stack, day):
    batch, _ = stack.run(day, 2)
    r = stack.push("coordinator/dead-letters/consolidation",
                   ConsolidationRequest(batch_id=batch["batch_id"], reason="all_items_terminal").model_dump())
    assert r.status_code == 200 and r.json()["result"] == "ignored"
    assert stack.store.get_batch(batch["batch_id"])["status"] == CONSOLIDATED


@pytest.mark.parametrize("message_id", ["a/b/c", "../../batches/x", "x" * 120])
def test_a_dead_letter_with_a_hostile_message_id_is_still_recorded(stack, message_id):
    r = stack.push("coordinator/dead-letters/work", b"not json at all", message_id=message_id)
    assert r.status_code == 200 and r.json()["result"] == "rejected"
    doc = stack.clients.fs.collection(REJECTED).document(hashlib.sha256(message_id.encode()).hexdigest()[:40]).get()
    assert doc.exists and doc.to_dict()["message_id"] == message_id


def test_a_work_message_that_disagrees_with_batch_state_is_rejected(stack, day):
    batch, _ = stack.run(day, 1)
    wrong_game = {"batch_id": batch["batch_id"], "game_date": day.isoformat(), "item_id": "player_0000",
                  "game_id": "not_the_game"}
    r = stack.push("worker/", wrong_game)
    assert r.status_code == 400 and "disagrees with batch state" in r.json()["error"]
    rows = list(stack.clients.bq.query(
        f"SELECT COUNT(*) AS n FROM `{stack.clients.settings.main_table_id}` WHERE game_id = 'not_the_game'",
        job_config=bigquery.QueryJobConfig()).result())
    assert rows[0]["n"] == 0
