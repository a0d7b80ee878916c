"""Re-runs of a date on the real stack: exactly one ACTIVE prediction per (player, system, prop), rows
of a newer run never overwritten by an older one, and no completion recorded without its rows."""

from __future__ import annotations

import time
from collections import Counter

from google.cloud import bigquery

from batchline.domain import ids
from batchline.domain.messages import CompletionMessage, ConsolidationRequest
from batchline.domain.runs import Item
from batchline.domain.statuses import CONSOLIDATED, CONSOLIDATION_FAILED, PENDING
from batchline.layout import REJECTED
from batchline.local.provision import seed_context, synthetic_context


def _rows(stack, day) -> list[dict]:
    s = stack.clients.settings
    job = stack.clients.bq.query(
        f"SELECT player_lookup, system_id, prop_type, game_id, batch_id, is_active FROM `{s.main_table_id}` "
        f"WHERE game_date = @d", job_config=bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("d", "DATE", day)]))
    return [dict(r.items()) for r in job.result()]


def _one_active_each(rows: list[dict]) -> bool:
    active = Counter((r["player_lookup"], r["system_id"], r["prop_type"]) for r in rows if r["is_active"])
    return all(n == 1 for n in active.values())


def test_a_rerun_after_the_schedule_changed_leaves_exactly_one_active_row_each(stack, day):
    schedule = synthetic_context(day, 6)
    seed_context(stack.clients.bq, stack.clients.settings, day, schedule)
    first, _ = stack.run(day, 6, seed=False)
    # player_0001 moves to another game; player_0002 leaves the schedule.
    changed = [dict(r, game_id="moved_g99") if r["player_lookup"] == "player_0001" else r
               for r in schedule if r["player_lookup"] != "player_0002"]
    seed_context(stack.clients.bq, stack.clients.settings, day, changed)
    second, ledger = stack.run(day, 5, force=True, seed=False)
    assert second["status"] == CONSOLIDATED and ledger.ok, ledger.problems
    rows = _rows(stack, day)
    active = [r for r in rows if r["is_active"]]
    assert _one_active_each(rows)
    assert {r["batch_id"] for r in active} == {second["batch_id"]}, "the date's active rows are the re-run's"
    assert {r["player_lookup"] for r in active} == {r["player_lookup"] for r in changed}
    assert {r["game_id"] for r in active if r["player_lookup"] == "player_0001"} == {"moved_g99"}
    stale = [r for r in rows if not r["is_active"]]
    assert {(r["player_lookup"], r["batch_id"]) for r in stale} == {
        ("player_0001", first["batch_id"]), ("player_0002", first["batch_id"])}, "replaced rows kept, inactive"
    assert len(stale) == 10 and second["kept_previous_items"] == {}


def test_items_a_rerun_did_not_merge_keep_their_previous_rows_and_say_so(stack, day):
    first, _ = stack.run(day, 4)
    second, ledger = stack.run(day, 4, force=True, seed=False, faults="poison=player_0002")
    assert second["status"] == CONSOLIDATED and ledger.missing_items == []
    assert second["kept_previous_items"] == {"player_0002": first["batch_id"]}
    rows = _rows(stack, day)
    assert _one_active_each(rows) and len([r for r in rows if r["is_active"]]) == 20
    assert {r["batch_id"] for r in rows if r["is_active"] and r["player_lookup"] == "player_0002"} == {
        first["batch_id"]}


def test_an_older_failed_batch_is_never_reconsolidated_over_a_newer_run(stack, day):
    older, _ = stack.run(day, 3, faults="zero_merge=1")
    assert older["status"] == CONSOLIDATION_FAILED
    newer, _ = stack.run(day, 3, force=True, seed=False)
    assert newer["status"] == CONSOLIDATED
    stack.store.set_batch_fields(older["batch_id"], {"faults": None})  # "the cause is fixed"
    r = stack.push("coordinator/consolidate",
                   ConsolidationRequest(batch_id=older["batch_id"], reason="manual").model_dump(), message_id="op-1")
    assert r.status_code == 200 and r.json()["result"] == "refused"
    after = stack.store.get_batch(older["batch_id"])
    assert after["status"] == CONSOLIDATION_FAILED and newer["batch_id"] in after["reopen_refused"]
    assert {r["batch_id"] for r in _rows(stack, day)} == {newer["batch_id"]}, "no row went back to the older run"


def _pending_batch(stack, day, n: int) -> tuple[str, list[Item]]:
    items = [Item(f"player_{i:04d}", "g1") for i in range(n)]
    batch_id = ids.new_batch_id(day)
    stack.store.create_batch(batch_id, day, items, force=True, faults=None, dispatch_token="test")
    stack.store.mark_running(batch_id, "test")
    return batch_id, items


def _forger(batch_id: str, item: str):
    def completion(table: str, rows: int, write_id: str, batch: str = batch_id) -> dict:
        payload = CompletionMessage(batch_id=batch, item_id=item, staging_table=table, write_id=write_id,
                                    row_count=max(rows, 1), write_status="ok", attempt=1).model_dump(mode="json")
        return {**payload, "row_count": rows}  # 0 rows: the model refuses to build it, a forger need not
    return completion


def _hold_the_staging_table(stack, batch_id: str) -> None:
    """pause_after_merge: the consolidation waits after its verified MERGE, before the table is dropped."""
    stack.store.set_batch_fields(batch_id, {"faults": "pause_after_merge=15"})


def _merged_writes(stack, batch_id: str) -> dict[str, set[str]]:
    """item -> the staged writes whose rows the main table now holds for the batch (by updated_at),
    read while the consolidation holds the staging table (_hold_the_staging_table)."""
    deadline = time.monotonic() + 240
    while not (stack.store.get_batch(batch_id) or {}).get("merge_result"):
        assert time.monotonic() < deadline, stack.store.get_batch(batch_id)
        time.sleep(0.2)
    s = stack.clients.settings
    job = stack.clients.bq.query(
        f"SELECT S.staging_item_id AS item, S.staging_write_id AS w FROM "
        f"`{s.staging_table_id(ids.batch_staging_table(batch_id))}` S JOIN `{s.main_table_id}` T "
        f"ON T.prediction_id = S.prediction_id AND T.updated_at = S.updated_at AND T.batch_id = S.batch_id "
        f"GROUP BY 1, 2")
    out: dict[str, set[str]] = {}
    for r in job.result():
        out.setdefault(r["item"], set()).add(r["w"])
    return out


def test_a_completion_with_nothing_behind_it_never_counts_as_done(stack, day):
    """Issue 15: a completion is a claim, verified in bulk with the batch's other claims (one query)
    before the consolidation is claimed. What cannot be true whatever is staged is refused at once (0
    rows, another table); a claim with nothing, too little or someone else's write behind it is
    accepted, then rejected by the verification with its reason kept on the item, and the item's work
    runs again (the real worker), so the batch ends with every item merged from a true write."""
    batch_id, items = _pending_batch(stack, day, 5)
    _hold_the_staging_table(stack, batch_id)
    p = [i.item_id for i in items]
    own = ids.batch_staging_table(batch_id)
    other_batch = ids.new_batch_id(day)
    s = stack.clients.settings
    for n, forged in enumerate([_forger(batch_id, p[0])(own, 0, ids.new_write_id()),
                                _forger(batch_id, p[0])(s.main_table, 5, ids.new_write_id()),
                                _forger(batch_id, p[0])(ids.batch_staging_table(other_batch), 5, ids.new_write_id())]):
        r = stack.push("coordinator/completions", forged, message_id=f"impossible-{batch_id}-{n}")
        assert r.status_code == 400, r.text
        r = stack.push("coordinator/dead-letters/completions", forged, message_id=f"impossible-dl-{batch_id}-{n}")
        assert r.status_code == 200 and r.json()["result"] == "rejected", r.text
    rejected = [d.to_dict() for d in stack.clients.fs.collection(REJECTED).stream()
                if d.to_dict()["message_id"].startswith(f"impossible-dl-{batch_id}-")]
    assert len(rejected) == 3, "each impossible dead letter is kept where an operator sees it"
    assert stack.store.get_item(batch_id, p[0])["status"] == PENDING

    true_write = stack.stage(s, batch_id, day, p[3])
    elsewhere = stack.stage(s, other_batch, day, p[4])  # the item's real write, in another batch's table
    claims = [("completions", p[0], 5, ids.new_write_id()),  # a write id that was never staged
              ("completions", p[1], 5, true_write),  # a real write, of another item
              ("completions", p[3], 5, true_write),  # the truth
              ("dead-letters/completions", p[4], 5, elsewhere)]  # the dead-letter path claims too
    for n, (route, item, rows, write) in enumerate(claims):
        r = stack.push(f"coordinator/{route}", _forger(batch_id, item)(own, rows, write),
                       message_id=f"c-{batch_id}-{n}")
        assert r.status_code == 200 and r.json()["result"] == "recorded", r.text
    # a claim of fewer rows than the item's work fails it at once, no query needed (issue 17.2)
    r = stack.push("coordinator/completions", _forger(batch_id, p[2])(own, 3, ids.new_write_id()), message_id="short")
    assert r.status_code == 200 and r.json()["result"] == "incomplete", r.text

    # the last item terminal: one verification rejects the three false claims and runs their work again
    merged = _merged_writes(stack, batch_id)
    batch = stack.wait(batch_id)
    assert batch["status"] == CONSOLIDATED, batch
    assert stack.store.terminal_count(batch) == 5, "a claim sent back to pending is counted off its shard"
    for item in (p[0], p[1], p[4]):
        doc = stack.store.get_item(batch_id, item)
        (rejection,) = doc["rejected_claims"]
        assert doc["status"] == "completed" and rejection["write_id"] != doc["write_id"], doc
        assert "which the batch staging table does not hold" in rejection["reason"] or \
            f"holds the rows of item {p[3]}" in rejection["reason"], rejection
    assert merged[p[3]] == {true_write} and all(len(merged[i]) == 1 for i in p if i != p[2]), merged
    assert p[2] not in merged and "incomplete write" in stack.store.get_item(batch_id, p[2])["failure_reason"]
    lines = [x for x in stack.log_lines("coordinator") if x.get("batch_id") == batch_id]
    verified = [x for x in lines if x.get("event") == "claims_verified"]
    assert [x["rejected"] for x in verified][:1] == [3] and len(verified) <= 3, "one query per round, not per item"
    assert sorted(x["item"] for x in lines if x.get("event") == "claim_rejected") == sorted([p[0], p[1], p[4]])


def test_a_completion_naming_another_write_after_the_item_completed_is_never_recorded(stack, day):
    """Issue 17.3: a second completion of a completed item is not a duplicate unless it repeats the
    recorded one; it is logged as a second write (WARNING), never recorded and never merged. If the
    recorded claim is the false one, the verification switches the item to its true write."""
    batch_id, items = _pending_batch(stack, day, 2)
    _hold_the_staging_table(stack, batch_id)
    item, neighbour = items[0].item_id, items[1].item_id
    own = ids.batch_staging_table(batch_id)
    s = stack.clients.settings
    neighbours = stack.stage(s, batch_id, day, neighbour)
    second = stack.stage(s, batch_id, day, item)  # a redelivered attempt's real write of the item
    completion = _forger(batch_id, item)
    r = stack.push("coordinator/completions", completion(own, 5, neighbours), message_id=f"forged-{batch_id}")
    assert r.status_code == 200 and r.json()["result"] == "recorded", "a claim, verified later"
    for n, payload in enumerate([completion(own, 5, second), completion(own, 5, ids.new_write_id())]):
        r = stack.push("coordinator/completions", payload, message_id=f"second-{batch_id}-{n}")
        assert r.status_code == 200 and r.json()["result"] == "second_write", r.text
    r = stack.push("coordinator/completions", completion(own, 5, neighbours), message_id=f"again-{batch_id}")
    assert r.status_code == 200 and r.json()["result"] == "duplicate", "the recorded claim, delivered again"
    assert stack.store.get_item(batch_id, item)["write_id"] == neighbours
    lines = [x for x in stack.log_lines("coordinator") if x.get("batch_id") == batch_id]
    assert [x["write_id"] for x in lines if x.get("event") == "completion_duplicate"] == [neighbours]
    assert {x["severity"] for x in lines if x.get("event") == "completion_second_write"} == {"WARNING"}

    r = stack.push("coordinator/completions", _forger(batch_id, neighbour)(own, 5, neighbours), message_id="n")
    assert r.status_code == 200 and r.json()["result"] == "recorded"
    assert _merged_writes(stack, batch_id) == {item: {second}, neighbour: {neighbours}}
    assert stack.wait(batch_id)["status"] == CONSOLIDATED
    doc = stack.store.get_item(batch_id, item)
    assert doc["write_id"] == second and doc["rejected_claims"][0]["write_id"] == neighbours, doc
    (rejected,) = [x for x in stack.log_lines("coordinator")
                   if x.get("batch_id") == batch_id and x.get("event") == "claim_rejected"]
    assert rejected["action"] == "switch" and rejected["switched_to"] == second
