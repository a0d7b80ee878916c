"""F3 under concurrency, against the real Firestore emulator: completions arriving at once, and the
same completion arriving many times at once, record each item exactly once and let exactly one
caller claim the consolidation."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from batchline.adapters.batch_store import BatchStore
from batchline.adapters.merge import merge_job_id
from batchline.domain import ids
from batchline.domain.messages import CompletionMessage
from batchline.domain.runs import Item
from batchline.domain.statuses import CONSOLIDATION_REQUESTED


def _batch(stack, day: dt.date, n: int) -> tuple[str, list[Item]]:
    items = [Item(f"player_{i:04d}", "g1") for i in range(n)]
    batch_id = ids.new_batch_id(day)
    stack.store.create_batch(batch_id, day, items, force=True, faults=None, dispatch_token="test")
    stack.store.mark_running(batch_id, "test")
    return batch_id, items


def _retrying(fn, attempts: int = 10):
    """What Pub/Sub does for a handler that answered 5xx (a transaction that gave up under contention)."""
    for i in range(attempts):
        try:
            return fn()
        except ValueError as exc:  # google-cloud-firestore: "Failed to commit transaction in N attempts"
            if "Failed to commit transaction" not in str(exc) or i == attempts - 1:
                raise


def test_simultaneous_completions_record_each_item_once_and_claim_once(stack, day):
    batch_id, items = _batch(stack, day, 24)
    store = BatchStore(stack.clients.fs)
    writes = {it.item_id: ids.new_write_id() for it in items}

    def complete(n_item: tuple[int, Item]) -> tuple[str, bool]:
        n, item = n_item  # n: the delivery's message id; a duplicate is another message
        table, write_id = ids.batch_staging_table(batch_id), writes[item.item_id]
        result = _retrying(lambda: store.record_completion(batch_id, item.item_id, table, 5, 1, write_id))
        claimed = (not store.any_pending(batch_id)) and _retrying(
            lambda: store.claim_consolidation(batch_id, "all_items_terminal", claimant=f"m{n}"))
        return result, claimed

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(complete, enumerate(items + items)))  # every completion twice, all at once
    results = Counter(r for r, _ in outcomes)
    assert results["recorded"] == 24 and results["duplicate"] == 24
    assert sum(claimed for _, claimed in outcomes) == 1, "exactly one caller may start consolidation"
    batch = store.get_batch(batch_id)
    assert batch["status"] == CONSOLIDATION_REQUESTED
    assert store.count_items(batch_id, "completed") == 24
    # The winner's own redelivery may publish again (it crashed before publishing); nobody else may.
    winner = batch["consolidation_claimant"]
    assert store.claim_consolidation(batch_id, "all_items_terminal", claimant=winner)
    assert not store.claim_consolidation(batch_id, "all_items_terminal", claimant="someone-else")
    assert store.claim_consolidation(batch_id, "stalled", claimant="stall-check", take_over=True)
    store.transition(batch_id, ["consolidation_requested"], {"status": "superseded"})  # nothing half-claimed


def test_the_same_completion_pushed_eight_times_at_once_is_recorded_once(stack, day):
    batch_id, items = _batch(stack, day, 2)
    s = stack.clients.settings
    write_id = stack.stage(s, batch_id, day, items[0].item_id)
    msg = CompletionMessage(batch_id=batch_id, item_id=items[0].item_id, row_count=5, write_status="ok", attempt=1,
                            staging_table=ids.batch_staging_table(batch_id), write_id=write_id)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda i: stack.push("coordinator/completions", msg.model_dump(mode="json"),
                                                     message_id=f"dup-{i}"), range(8)))
    # A transaction that lost a race may answer 500 (Pub/Sub would redeliver); none may lie.
    ok = [a.json()["result"] for a in answers if a.status_code == 200]
    assert all(a.status_code in (200, 500) for a in answers)
    assert ok.count("recorded") <= 1 and set(ok) <= {"recorded", "duplicate"}
    retry = stack.push("coordinator/completions", msg.model_dump(mode="json"), message_id="dup-retry")
    assert retry.status_code == 200
    assert (ok + [retry.json()["result"]]).count("recorded") == 1
    item = stack.store.get_item(batch_id, items[0].item_id)
    assert item["status"] == "completed" and item["row_count"] == 5 and item["write_id"] == write_id
    assert stack.store.get_batch(batch_id)["status"] == "running", "one item is still pending"
    stack.store.transition(batch_id, ["running"], {"status": "superseded"})  # leave nothing open


def test_concurrent_completion_pushes_start_exactly_one_consolidation(stack, day):
    """Through the real handler: every completion twice, 8 at a time, into the coordinator."""
    stack.seed(day, 6)
    s = stack.clients.settings
    batch_id, items = _batch(stack, day, 6)
    messages = [CompletionMessage(batch_id=batch_id, item_id=it.item_id, row_count=5, write_status="ok", attempt=1,
                                  staging_table=ids.batch_staging_table(batch_id),
                                  write_id=stack.stage(s, batch_id, day, it.item_id)) for it in items]
    deliveries = [(f"c-{n}-{k}", m) for k in range(2) for n, m in enumerate(messages)]

    def push(delivery):
        message_id, msg = delivery
        for _ in range(10):  # what Pub/Sub does after a 5xx
            r = stack.push("coordinator/completions", msg.model_dump(mode="json"), message_id=message_id)
            if r.status_code == 200:
                return r.json()["result"]
        raise AssertionError(r.text)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = Counter(pool.map(push, deliveries))
    assert results["recorded"] == 6 and results["duplicate"] == 6
    batch = stack.wait(batch_id)
    assert batch["status"] == "consolidated" and batch["merged_items"] == 6
    log = Path(stack.info.handles["coordinator"].log_path).read_text().splitlines()
    requested = [line for line in log if '"consolidation_requested"' in line and batch_id in line]
    assert len(requested) == 1, "exactly one consolidation request"
    assert json.loads(requested[0])["message_id"] == batch["consolidation_message_id"]
    merges = [j for j in stack.clients.bq.list_jobs(all_users=True, max_results=5000)
              if getattr(j, "statement_type", None) == "MERGE" and batch_id in (j.query or "")]
    assert [j.job_id for j in merges] == [merge_job_id(batch_id)]
