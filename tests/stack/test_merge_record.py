"""A MERGE that committed while recording its result failed (issue 18 item 3), on the real stack: the
redelivery, the stall check's re-open and an operator's re-open all find the committed job by its
deterministic id and record it from the pinned manifest, so the batch ends consolidated with exactly one
MERGE job; a record Firestore refuses for good fails the batch saying the rows ARE merged."""

from __future__ import annotations

import uuid

from google.api_core import exceptions as gexc

from batchline.adapters.merge import merge_job_id
from batchline.domain import ids
from batchline.domain.faults import FaultSpec
from batchline.domain.messages import ConsolidationRequest
from batchline.domain.runs import Item
from batchline.domain.statuses import CONSOLIDATED, CONSOLIDATING, CONSOLIDATION_FAILED, MERGED_UNRECORDED
from batchline.flows import merge_record as merge_recovery
from batchline.layout import UNINDEXED


def _merges(stack, batch_id: str) -> list:
    return [j for j in stack.clients.bq.list_jobs(all_users=True, max_results=5000)
            if getattr(j, "statement_type", None) == "MERGE" and batch_id in (j.query or "")]


def _no_job(stack, job_id: str) -> bool:
    try:
        stack.clients.bq.get_job(job_id)
    except gexc.NotFound:
        return True
    return False


def _staging_exists(stack, batch_id: str) -> bool:
    try:
        stack.clients.bq.get_table(stack.clients.settings.staging_table_id(ids.batch_staging_table(batch_id)))
    except gexc.NotFound:
        return False
    return True


def test_a_record_that_fails_is_recorded_by_the_redelivery_without_a_second_merge(stack, day):
    batch, ledger = stack.run(day, 3, faults="record_fail=2")
    assert batch["status"] == CONSOLIDATED and ledger.ok, (batch.get("error"), ledger.problems)
    assert batch["fault_attempts"]["record_merge"] == 3, "two refused records, then the redelivery's"
    assert batch["merge_result"]["job_id"] == merge_job_id(batch["batch_id"], 0, 0)
    assert ledger.main_table_mutating_dml == 1 and len(_merges(stack, batch["batch_id"])) == 1


def test_a_dead_lettered_record_is_recovered_by_the_stall_checks_reopen_from_the_committed_job(stack, day):
    """Every delivery's record failed until the message dead-lettered: the batch is failed (transiently),
    the stall check re-opens it under generation 1, and that consolidation records generation 0's job."""
    s = stack.clients.settings
    batch_id = ids.new_batch_id(day)
    items = [Item(f"player_{i:04d}", "g1") for i in range(2)]
    stack.store.create_batch(batch_id, day, items, force=True, faults="record_fail=2", dispatch_token="t")
    stack.store.mark_running(batch_id, "t")
    schema = list(stack.clients.bq.get_table(s.main_table_id).schema)
    for it in items:
        write = stack.stage(s, batch_id, day, it.item_id, schema)
        stack.store.record_completion(batch_id, it.item_id, ids.batch_staging_table(batch_id), 5, 1, write)
    assert stack.store.claim_consolidation(batch_id, "all_items_terminal", claimant="c")
    stack.store.set_batch_fields(batch_id, {"consolidation_message_id": "m-rec"})
    payload = ConsolidationRequest(batch_id=batch_id, reason="all_items_terminal").model_dump()
    for _ in range(2):  # two deliveries: each runs (or finds) the MERGE, then cannot record it
        r = stack.push("coordinator/consolidate", payload, message_id="m-rec")
        assert r.status_code >= 500 and "injected record_fail" in r.text, r.text
    assert len(_merges(stack, batch_id)) == 1, "the second delivery found the job; it did not merge again"
    dead = stack.push("coordinator/dead-letters/consolidation", payload)
    assert dead.json()["result"] == "recorded"
    assert stack.store.get_batch(batch_id)["status"] == CONSOLIDATION_FAILED
    assert [r["action"] for r in stack.stall_check(stall_minutes=30) if r["batch_id"] == batch_id] == \
        ["consolidation_reopened"]
    batch = stack.wait_for(batch_id, CONSOLIDATED)
    assert batch["consolidation_generation"] == 1 and batch["merged_items"] == 2
    assert batch["merge_result"]["job_id"] == merge_job_id(batch_id, 0, 0), "generation 0's job, recorded"
    assert _no_job(stack, merge_job_id(batch_id, 1, 0)), "generation 1 submitted no MERGE"
    assert len(_merges(stack, batch_id)) == 1


def test_a_result_refused_as_too_large_says_the_rows_are_merged_and_a_reopen_records_it(stack, day):
    batch, ledger = stack.run(day, 3, faults="record_too_large=1")
    batch_id = batch["batch_id"]
    job = merge_job_id(batch_id, 0, 0)
    assert batch["status"] == CONSOLIDATION_FAILED and batch["failure_kind"] == MERGED_UNRECORDED
    assert "ARE in the main table" in batch["error"] and job in batch["error"]
    assert batch["merged_job_id"] == job and batch["merged_rows_unrecorded"] == 15
    assert "merge_result" not in batch and _staging_exists(stack, batch_id), "evidence kept"
    assert ledger.merged_items == 3 and ledger.main_table_mutating_dml == 1, "the ledger sees the rows"
    assert [r["action"] for r in stack.stall_check(stall_minutes=30) if r["batch_id"] == batch_id] == [], \
        "not re-opened automatically: a person fixes the cause first"
    r = stack.push("coordinator/consolidate", ConsolidationRequest(batch_id=batch_id, reason="manual").model_dump(),
                   message_id=f"operator-{uuid.uuid4().hex}")
    assert r.status_code == 200 and r.json()["result"] == "consolidated", r.text
    batch = stack.store.get_batch(batch_id)
    assert batch["status"] == CONSOLIDATED and batch["consolidation_generation"] == 1
    assert batch["merge_result"]["job_id"] == job and batch["merged_items"] == 3
    assert _no_job(stack, merge_job_id(batch_id, 1, 0)) and len(_merges(stack, batch_id)) == 1
    assert not _staging_exists(stack, batch_id)


def test_firestore_refusing_a_record_too_large_is_reported_truthfully_without_a_fault(stack, day):
    """No injection: a merge_result over Firestore's 1 MiB (the emulator enforces that limit, not the
    index-entry limit) is refused with 400, and the batch says its rows are merged."""
    batch_id = ids.new_batch_id(day)
    stack.store.create_batch(batch_id, day, [Item("player_0000", "g1")], force=True, faults=None, dispatch_token="t")
    stack.store.batch_ref(batch_id).update({"status": CONSOLIDATING, "lease_token": "L"})
    huge = {"job_id": "j", "manifest": {f"p{i:06d}": uuid.uuid4().hex for i in range(40_000)}}
    out = merge_recovery.record_merge(stack.store, batch_id, "L", huge, "batchline_merge_x", FaultSpec(), (5, 1))
    assert out == merge_recovery.UNRECORDABLE
    batch = stack.store.get_batch(batch_id)
    assert batch["status"] == CONSOLIDATION_FAILED and batch["failure_kind"] == MERGED_UNRECORDED
    assert "ARE in the main table" in batch["error"] and "maximum entity size" in batch["error"]


def test_every_batch_state_field_that_grows_with_the_items_is_exempted_from_indexing(stack, day):
    """A consolidated batch's documents: any field holding a list or map as long as the batch (or
    longer) must be in batchline/layout.py, or infra would leave it indexed (40,000 entries cap).
    Since issue 15 a pin document names its rows in the manifest table: nothing in it grows."""
    n = 12
    batch, _ = stack.run(day, n, faults="poison=player_0003")
    pinned = stack.store.pinned_manifests(batch["batch_id"])
    assert pinned and all(not any(_longest(v) >= n for v in d.values()) for d in pinned.values()), pinned
    assert stack.merged_manifest(batch).keys() == {f"player_{i:04d}" for i in range(n)} - {"player_0003"}
    for group, doc in [("batches", batch), *(("manifests", d) for d in pinned.values())]:
        growing = {f for f, v in doc.items() if _longest(v) >= 1 and isinstance(v, list | dict)}
        bounded = {"fault_attempts", "kept_previous_items", "main_table_dml_jobs"}  # per MERGE, capped, or per fault
        assert growing <= set(UNINDEXED[group]) | bounded, \
            (group, growing - set(UNINDEXED[group]))


def _longest(value) -> int:
    if isinstance(value, dict):
        return max([len(value), *map(_longest, value.values())])
    if isinstance(value, list):
        return max([len(value), *map(_longest, value)])
    return 0

