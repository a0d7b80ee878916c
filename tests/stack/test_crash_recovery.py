"""Crashes, outages and duplicate deliveries around the batch lifecycle, on the real stack: nothing
waits out a 30-minute stall period, no transient failure needs a person, and no delivery of a
consolidation message can make a second MERGE."""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor

from google.cloud import firestore

from batchline.adapters import manifests
from batchline.domain import ids
from batchline.domain.messages import CompletionMessage, ConsolidationRequest
from batchline.domain.runs import Item
from batchline.domain.statuses import CONSOLIDATED, CONSOLIDATION_FAILED, CONSOLIDATION_REQUESTED
from batchline.layout import ITEMS
from batchline.local import processes as procs
from batchline.local import stack as local_stack
from batchline.local.provision import synthetic_context


def _merges(stack, batch_id: str) -> list:
    return [j for j in stack.clients.bq.list_jobs(all_users=True, max_results=5000)
            if getattr(j, "statement_type", None) == "MERGE" and batch_id in (j.query or "")]


def _staged_batch(stack, day, n: int) -> tuple[str, list[Item], dict[str, str]]:
    """A running batch whose items are all staged and completed: what is left is the consolidation.
    Also returns each item's recorded write id."""
    s = stack.clients.settings
    items = [Item(f"player_{i:04d}", "g1") for i in range(n)]
    batch_id = ids.new_batch_id(day)
    stack.store.create_batch(batch_id, day, items, force=True, faults=None, dispatch_token="test")
    stack.store.mark_running(batch_id, "test")
    schema = list(stack.clients.bq.get_table(s.main_table_id).schema)
    writes = {}
    for it in items:
        writes[it.item_id] = stack.stage(s, batch_id, day, it.item_id, schema)
        stack.store.record_completion(batch_id, it.item_id, ids.batch_staging_table(batch_id), 5, 1,
                                      writes[it.item_id])
    return batch_id, items, writes


def _ago(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)


def test_a_claim_nobody_published_is_published_by_the_next_caller_after_a_minute(stack, day):
    batch_id, items, writes = _staged_batch(stack, day, 2)
    assert stack.store.claim_consolidation(batch_id, "all_items_terminal", claimant="died-before-publishing")
    dup = CompletionMessage(batch_id=batch_id, item_id=items[0].item_id, row_count=5, write_status="ok", attempt=1,
                            staging_table=ids.batch_staging_table(batch_id), write_id=writes[items[0].item_id])
    r = stack.push("coordinator/completions", dup.model_dump(mode="json"), message_id="later-1")
    assert r.json()["result"] == "duplicate"
    batch = stack.store.get_batch(batch_id)
    assert batch["status"] == CONSOLIDATION_REQUESTED and not batch.get("consolidation_message_id"), \
        "within the grace period the claimant may still be publishing"
    stack.store.set_batch_fields(batch_id, {"consolidation_requested_at": _ago(61)})
    r = stack.push("coordinator/completions", dup.model_dump(mode="json"), message_id="later-2")
    assert r.status_code == 200
    assert stack.wait(batch_id)["status"] == CONSOLIDATED
    assert len(_merges(stack, batch_id)) == 1


def test_a_start_that_died_mid_dispatch_is_resumed_by_the_next_start(stack, day):
    stack.seed(day, 6)
    items = [Item(r["player_lookup"], r["game_id"]) for r in synthetic_context(day, 6)]
    batch_id = ids.new_batch_id(day)
    stack.store.create_batch(batch_id, day, items, force=False, faults=None, dispatch_token="dead-start")
    # It died after writing half the item documents and before publishing anything.
    for it in items[3:]:
        stack.store.batch_ref(batch_id).collection(ITEMS).document(it.item_id).delete()
    early = stack.start(day)
    assert early.status_code == 409, "while its dispatch lease lives, the starter may still be publishing"
    stack.store.batch_ref(batch_id).update({"dispatch_lease_until": _ago(1)})
    resumed = stack.start(day)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["batch_id"] == batch_id and resumed.json()["resumed"] is True
    batch = stack.wait(batch_id)
    assert batch["status"] == CONSOLIDATED and batch["merged_items"] == 6


def test_a_transient_merge_failure_is_retried_under_a_new_attempt_id(stack, day):
    batch, ledger = stack.run(day, 3, faults="merge_transient=2")
    assert batch["status"] == CONSOLIDATED and ledger.ok, (batch.get("error"), ledger.problems)
    assert batch["merge_attempt"] == 2
    assert batch["merge_result"]["job_id"] == f"batchline_merge_{batch['batch_id']}_g0_a2"
    assert ledger.main_table_mutating_dml == 1 and len(_merges(stack, batch["batch_id"])) == 1


def test_concurrent_deliveries_of_one_consolidation_message_run_one_merge(stack, day):
    batch_id, _, _ = _staged_batch(stack, day, 3)
    assert stack.store.claim_consolidation(batch_id, "all_items_terminal", claimant="c")
    stack.store.set_batch_fields(batch_id, {"consolidation_message_id": "m-dup"})
    payload = ConsolidationRequest(batch_id=batch_id, reason="all_items_terminal").model_dump()
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: stack.push("coordinator/consolidate", payload, message_id="m-dup"),
                                range(4)))
    results = sorted(r.json()["result"] for r in answers)
    assert all(r.status_code == 200 for r in answers)
    assert results.count("consolidated") == 1 and set(results) <= {"consolidated", "busy", "done"}, results
    assert stack.store.get_batch(batch_id)["status"] == CONSOLIDATED
    assert len(_merges(stack, batch_id)) == 1


def test_the_stall_check_reopens_a_consolidation_that_failed_transiently(stack, day):
    batch_id, _, _ = _staged_batch(stack, day, 2)
    assert stack.store.claim_consolidation(batch_id, "all_items_terminal", claimant="c")
    stack.store.set_batch_fields(batch_id, {"consolidation_message_id": "m-gone"})
    # Its message was retried until dead-lettered (BigQuery was away): failed, but transiently.
    dead = stack.push("coordinator/dead-letters/consolidation",
                      ConsolidationRequest(batch_id=batch_id, reason="all_items_terminal").model_dump())
    assert dead.json()["result"] == "recorded"
    assert stack.store.get_batch(batch_id)["status"] == CONSOLIDATION_FAILED
    reports = [r for r in stack.stall_check(stall_minutes=30) if r["batch_id"] == batch_id]
    assert [r["action"] for r in reports] == ["consolidation_reopened"]
    batch = stack.wait_for(batch_id, CONSOLIDATED)
    assert batch["consolidation_generation"] == 1 and batch["auto_reopens"] == 1 and batch["merged_items"] == 2


def test_the_stall_check_leaves_a_permanent_failure_to_a_person(stack, day):
    batch, _ = stack.run(day, 2, faults="zero_merge=1")
    assert batch["status"] == CONSOLIDATION_FAILED and batch["failure_kind"] == "permanent"
    assert [r for r in stack.stall_check(stall_minutes=30) if r["batch_id"] == batch["batch_id"]] == []
    assert stack.store.get_batch(batch["batch_id"])["status"] == CONSOLIDATION_FAILED


def test_a_worker_outage_of_eight_seconds_dead_letters_nothing(stack, day):
    stack.seed(day, 30)
    resp = stack.start(day)
    assert resp.status_code == 200
    batch_id = resp.json()["batch_id"]
    worker = local_stack.load(stack.info.state_dir).handles["worker"]
    time.sleep(1.0)
    assert procs.stop(worker)
    try:
        time.sleep(8.0)
    finally:
        healed = local_stack.up(stack.info.state_dir)  # what `batchline local supervise` does
        stack.info.services.update(healed.services)
    assert healed.handles["worker"].port == worker.port and healed.handles["worker"].pid != worker.pid
    batch = stack.wait(batch_id)
    assert batch["status"] == CONSOLIDATED
    assert batch["failed_items"] == [] and batch["merged_items"] == 30, "an outage within the budget loses nothing"


def test_a_consolidation_whose_holder_died_is_taken_over_once_its_lease_lapses(stack, day):
    batch_id, _, _ = _staged_batch(stack, day, 2)
    assert stack.store.claim_consolidation(batch_id, "all_items_terminal", claimant="c")
    stack.store.set_batch_fields(batch_id, {"consolidation_message_id": "m-died"})
    verdict, _ = stack.store.take_lease(batch_id, "holder-killed-mid-merge")
    assert verdict == "run"
    # Its redelivery found the lease alive and was answered busy (and acknowledged).
    busy = stack.push("coordinator/consolidate",
                      ConsolidationRequest(batch_id=batch_id, reason="all_items_terminal").model_dump(),
                      message_id="m-died")
    assert busy.json()["result"] == "busy"
    assert [r for r in stack.stall_check(stall_minutes=30) if r["batch_id"] == batch_id] == [], "lease alive"
    stack.store.set_batch_fields(batch_id, {"lease_expires_at": _ago(1)})
    reports = [r for r in stack.stall_check(stall_minutes=30) if r["batch_id"] == batch_id]
    assert [r["action"] for r in reports] == ["consolidation_lease_expired_republished"]
    batch = stack.wait(batch_id)
    assert batch["status"] == CONSOLIDATED and batch["merged_items"] == 2
    assert len(_merges(stack, batch_id)) == 1


def test_a_summary_lost_after_the_result_is_sent_by_the_redelivery(stack, day):
    batch, _ = stack.run(day, 2)
    deadline = time.monotonic() + 30
    while "summary_message_id" not in batch and time.monotonic() < deadline:
        time.sleep(0.1)  # the summary goes out just after the batch is marked consolidated
        batch = stack.store.get_batch(batch["batch_id"])
    first = batch["summary_message_id"]
    stack.store.batch_ref(batch["batch_id"]).update({"summary_message_id": firestore.DELETE_FIELD})  # lost
    r = stack.push("coordinator/consolidate",
                   ConsolidationRequest(batch_id=batch["batch_id"], reason="all_items_terminal").model_dump(),
                   message_id="redelivered")
    assert r.json()["result"] == "done"
    again = stack.store.get_batch(batch["batch_id"])["summary_message_id"]
    assert again and again != first


def test_a_redelivered_consolidation_merges_and_records_the_manifest_pinned_for_its_attempt(stack, day):
    """A delivery that submitted its MERGE and died left a pinned manifest; the redelivery waits for that
    job, so it must verify and record that manifest, not a newer inventory (here one naming an item
    staged after the first inventory). The newer item is reported missing and its rows keep the table."""
    batch_id, items, writes = _staged_batch(stack, day, 2)
    first, late = items[0].item_id, items[1].item_id
    # what the dead delivery's inventory saw, only `first`, pinned: its rows, then the document naming them
    pin = ids.new_pin(0, 0)
    manifests.write(stack.clients.bq, stack.clients.appender, stack.clients.settings, manifests.rows(
        batch_id, pin, {first: writes[first]}, (), [first, late], dt.datetime.now(dt.UTC)))
    stack.store.pin_manifest(batch_id, 0, 0, {"pin": pin, "merge_items": 1, "scheduled_items": 2,
                                              "staged_rows_total": 5, "recovered": [], "abandoned_writes": 0,
                                              "missing_writes": [late]})
    assert stack.store.claim_consolidation(batch_id, "all_items_terminal", claimant="died-after-merge")
    payload = ConsolidationRequest(batch_id=batch_id, reason="all_items_terminal").model_dump()
    r = stack.push("coordinator/consolidate", payload, message_id=f"pinned-{batch_id}")
    assert r.status_code == 200 and r.json()["result"] == "consolidated", r.text
    batch = stack.wait(batch_id)
    assert batch["status"] == CONSOLIDATED
    assert batch["merge_result"]["pin"] == pin and stack.merged_manifest(batch) == {first: writes[first]}, \
        "the pinned manifest, not a new one"
    assert batch["merged_items"] == 1 and batch["missing_items"] == [late]
    assert batch["staging_table_dropped"] is False, "rows beyond the pinned inventory keep the table"
    assert len(_merges(stack, batch_id)) == 1
    stack.store.pin_manifest(batch_id, 0, 0, {"pin": ids.new_pin(0, 0), "merge_items": 0, "staged_rows_total": 0,
                                              "recovered": [], "abandoned_writes": 0, "missing_writes": []})
    again = stack.clients.fs.collection("batches").document(batch_id).collection("manifests").document("g0_a0")
    assert again.get().to_dict()["pin"] == pin, "the first pin wins"
