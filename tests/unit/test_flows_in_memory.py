"""The flows' decisions without emulators (milliseconds): a completion recorded twice, a consolidation
claim two claimants race for, a claim with nothing staged behind it, and the stall check on finished and
stuck batches. The store's real write methods run over an in-memory document map
(tests/unit/batch_store_double.py); the emulator tests in tests/stack stay the proof of the whole path."""

from __future__ import annotations

import datetime as dt
import json

from batchline.domain import ids, lifecycle
from batchline.domain.evidence import StagedWrite
from batchline.domain.item_shape import EXPECTED_PAIRS, EXPECTED_ROWS
from batchline.domain.messages import CompletionMessage, StallCheckRequest
from batchline.domain.statuses import COMPLETED, CONSOLIDATED, CONSOLIDATION_REQUESTED, FAILED, PENDING, RUNNING
from batchline.flows.completion import CompletionKind, judge_completion, record_completion
from batchline.flows.consolidation_request import request_consolidation_if_done
from batchline.flows.stall import stall_check
from tests.unit.batch_store_double import RecordingClients

DAY = "2030-01-15"
BATCH = "20300115_0123456789ab"
WRITE = {"p1": "a" * 32, "p2": "b" * 32}


def running(items=("p1", "p2"), **fields) -> RecordingClients:
    clients = RecordingClients()
    clients.batches.seed(BATCH, DAY, {i: f"g_{i}" for i in items}, **fields)
    return clients


def completion(item: str, write: str | None = None, rows: int = EXPECTED_ROWS) -> CompletionMessage:
    return CompletionMessage(batch_id=BATCH, item_id=item, staging_table=ids.batch_staging_table(BATCH),
                             write_id=write or WRITE[item], row_count=rows, write_status="ok", attempt=1)


def stage(clients: RecordingClients, item: str, write: str | None = None, rows: int = EXPECTED_ROWS) -> None:
    w = StagedWrite(item, write or WRITE[item], rows, rows, frozenset(EXPECTED_PAIRS))
    clients.staging.tables.setdefault(BATCH, {}).setdefault(item, {})[w.write_id] = w


def test_a_completion_recorded_twice_is_one_record_and_one_consolidation_request():
    clients = running()
    stage(clients, "p1")
    stage(clients, "p2")
    assert record_completion(clients, completion("p1"), "m-1") == "recorded"
    writes = clients.batches.writes
    assert record_completion(clients, completion("p1"), "m-1") == "duplicate"
    assert clients.batches.writes == writes, "a redelivered completion writes nothing"
    assert clients.topics() == [], "p2 is still pending: no consolidation yet"
    assert record_completion(clients, completion("p2"), "m-2") == "recorded"
    assert record_completion(clients, completion("p2"), "m-2") == "duplicate"
    assert clients.topics() == ["consolidation"], "exactly one request, whatever is redelivered"
    batch = clients.batches.get_batch(BATCH)
    assert batch["status"] == CONSOLIDATION_REQUESTED and batch["consolidation_message_id"] == "msg-1"
    item = clients.batches.get_item(BATCH, "p1")
    assert (item["status"], item["write_id"], item["row_count"]) == (COMPLETED, WRITE["p1"], EXPECTED_ROWS)


def test_a_second_write_of_a_completed_item_is_never_recorded():
    clients = running()
    record_completion(clients, completion("p1"), "m-1")
    kind, _, _ = judge_completion(clients.batches, completion("p1", "c" * 32))
    assert kind == CompletionKind.SECOND_WRITE
    assert record_completion(clients, completion("p1", "c" * 32), "m-9") == "second_write"
    assert clients.batches.get_item(BATCH, "p1")["write_id"] == WRITE["p1"]


def test_two_claimants_race_for_the_consolidation_claim_and_one_publishes():
    clients = running()
    for item in ("p1", "p2"):
        stage(clients, item)
        clients.batches.record_completion_counted(BATCH, item, ids.batch_staging_table(BATCH), EXPECTED_ROWS, 1,
                                                  WRITE[item])
    assert request_consolidation_if_done(clients, BATCH, "m-1") is True
    assert request_consolidation_if_done(clients, BATCH, "m-2") is False, "the claim is lost to m-1"
    assert request_consolidation_if_done(clients, BATCH, "m-1") is False, "m-1's redelivery: published already"
    assert clients.topics() == ["consolidation"]


def test_a_claim_with_nothing_staged_goes_back_to_pending_and_its_work_is_published_again():
    clients = running()
    stage(clients, "p2")  # p1's completion is a claim nothing stands behind
    assert record_completion(clients, completion("p1"), "m-1") == "recorded"
    assert record_completion(clients, completion("p2"), "m-2") == "recorded"
    item = clients.batches.get_item(BATCH, "p1")
    assert item["status"] == PENDING and item.get("rejected_claims"), item
    assert clients.topics() == ["work"], "the item runs again; no consolidation while a claim is rejected"
    work = json.loads(clients.published[0][1])
    assert (work["item_id"], work["game_id"]) == ("p1", "g_p1")
    assert clients.batches.get_batch(BATCH)["status"] == RUNNING


def test_the_stall_check_leaves_a_finished_batch_alone():
    clients = running(status=CONSOLIDATED)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    for item in ("p1", "p2"):
        clients.batches.docs[clients.batches.item_ref(BATCH, item).path]["updated_at"] = old
    writes = clients.batches.writes
    assert stall_check(clients, StallCheckRequest()) == []
    assert clients.topics() == [] and clients.batches.writes == writes


def test_the_stall_check_redispatches_a_stuck_batch_once_then_consolidates_what_exists():
    clients = running()
    stage(clients, "p1")
    record_completion(clients, completion("p1"), "m-1")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    for item in ("p1", "p2"):
        clients.batches.docs[clients.batches.item_ref(BATCH, item).path]["updated_at"] = old
    [report] = stall_check(clients, StallCheckRequest(stall_minutes=30, min_completion_pct=50))
    assert (report["action"], report["pending_items"]) == ("redispatched", ["p2"])
    assert clients.topics() == ["work"]
    clients.batches.docs[clients.batches.item_ref(BATCH, "p2").path]["updated_at"] = old
    [report] = stall_check(clients, StallCheckRequest(stall_minutes=30, min_completion_pct=50))
    assert report["action"] == "consolidating_partial"
    assert clients.topics() == ["work", "consolidation"]
    assert clients.batches.get_item(BATCH, "p2")["status"] == FAILED


def test_a_claim_published_by_nobody_is_published_by_the_stall_check_after_the_grace():
    clients = running()
    for item in ("p1", "p2"):
        stage(clients, item)
        clients.batches.record_completion_counted(BATCH, item, ids.batch_staging_table(BATCH), EXPECTED_ROWS, 1,
                                                  WRITE[item])
    # a claimant that died between its claim and its publish
    assert clients.batches.claim_consolidation(BATCH, "all_items_terminal", "dead-claimant")
    assert stall_check(clients, StallCheckRequest()) == [], "within the grace the claimant may still publish"
    ref = clients.batches.batch_ref(BATCH).path
    clients.batches.docs[ref]["consolidation_requested_at"] -= lifecycle.CLAIM_GRACE + dt.timedelta(seconds=1)
    [report] = stall_check(clients, StallCheckRequest())
    assert report["action"] == "consolidation_republished" and clients.topics() == ["consolidation"]
    assert stall_check(clients, StallCheckRequest()) == [] and clients.topics() == ["consolidation"]
