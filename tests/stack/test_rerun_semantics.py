"""Re-runs of a date on the real stack: exactly one ACTIVE prediction per (player, system, prop), rows
of a newer run never overwritten by an older one, and no completion recorded without its rows."""

from __future__ import annotations

from collections import Counter

from google.cloud import bigquery

from batchline import ids
from batchline.local.provision import seed_context, synthetic_context
from batchline.messages import CompletionMessage, ConsolidationRequest
from batchline.state import CONSOLIDATED, CONSOLIDATION_FAILED, PENDING, REJECTED, Item


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


def test_a_completion_with_nothing_behind_it_is_refused_on_every_path(stack, day):
    batch_id, items = _pending_batch(stack, day, 2)
    item, neighbour = items[0].item_id, items[1].item_id
    own = ids.batch_staging_table(batch_id)
    other_batch = ids.new_batch_id(day)
    s = stack.clients.settings

    def completion(table: str, rows: int, write_id: str, item_id: str = item, batch: str = batch_id) -> dict:
        payload = CompletionMessage(batch_id=batch, item_id=item_id, staging_table=table, write_id=write_id,
                                    row_count=max(rows, 1), write_status="ok", attempt=1).model_dump(mode="json")
        return {**payload, "row_count": rows}  # 0 rows: the model refuses to build it, a forger need not

    def refused(forged: list[dict], tag: str) -> list[str]:
        """Each forged completion: 400 on the live path, kept as rejected on the dead-letter path."""
        errors = []
        for n, payload in enumerate(forged):
            r = stack.push("coordinator/completions", payload, message_id=f"forged-{tag}-{n}")
            assert r.status_code == 400, (payload, r.text)
            errors.append(r.json()["error"])
            r = stack.push("coordinator/dead-letters/completions", payload,
                           message_id=f"forged-dl-{batch_id}-{tag}-{n}")
            assert r.status_code == 200 and r.json()["result"] == "rejected", (payload, r.text)
        return errors

    # Nothing staged yet: the batch table does not even exist.
    before = [completion(own, 0, ids.new_write_id()), completion(own, 5, ids.new_write_id()),
              completion(s.main_table, 5, ids.new_write_id())]
    errors = refused(before, "before")
    assert "row_count" in errors[0] and "does not exist" in errors[1] and "not the staging table" in errors[2]
    # Now the item's write, its neighbour's and another batch's write of the same item are real.
    write_id = stack.stage(s, batch_id, day, item)
    neighbours = stack.stage(s, batch_id, day, neighbour)
    elsewhere = stack.stage(s, other_batch, day, item)
    after = [
        completion(ids.batch_staging_table(other_batch), 5, elsewhere),  # another batch's table, its real write
        completion(s.main_table, 5, write_id),  # the main table
        completion(own, 7, write_id),  # the right write, a wrong count
        completion(own, 5, ids.new_write_id()),  # a write id that was never staged
        completion(own, 5, neighbours),  # a real write, of another item
        completion(own, 5, elsewhere),  # a real write of the item, in another batch's table
    ]
    errors = refused(after, "after")
    assert "not the staging table" in errors[0] and "not the staging table" in errors[1]
    assert all("holds" in e for e in errors[2:]), errors
    assert "holds 5" in errors[2] and all("holds 0" in e for e in errors[3:]), errors
    assert stack.store.get_item(batch_id, item)["status"] == PENDING, "nothing forged was recorded"
    assert stack.store.get_item(batch_id, neighbour)["status"] == PENDING
    rejected = [d.to_dict() for d in stack.clients.fs.collection(REJECTED).stream()
                if d.to_dict()["message_id"].startswith(f"forged-dl-{batch_id}-")]
    assert len(rejected) == len(before) + len(after), "each forged dead letter is kept where an operator sees it"
    r = stack.push("coordinator/completions", completion(own, 5, write_id), message_id="true")
    assert r.status_code == 200 and r.json()["result"] == "recorded"
    recorded = stack.store.get_item(batch_id, item)
    assert recorded["status"] == "completed" and recorded["write_id"] == write_id and recorded["row_count"] == 5
    stack.store.transition(batch_id, ["running"], {"status": "superseded"})  # leave nothing open


def test_a_completion_naming_another_write_is_refused_after_the_item_completed_too(stack, day):
    """Issue 17.3: the duplicate shortcut of a completed item must not skip the write check."""
    batch_id, items = _pending_batch(stack, day, 2)
    item, neighbour = items[0].item_id, items[1].item_id
    own = ids.batch_staging_table(batch_id)
    s = stack.clients.settings
    write_id = stack.stage(s, batch_id, day, item)
    neighbours = stack.stage(s, batch_id, day, neighbour)
    second = stack.stage(s, batch_id, day, item)  # a redelivered attempt's real write of the same item

    def completion(rows: int, write: str) -> dict:
        return CompletionMessage(batch_id=batch_id, item_id=item, staging_table=own, write_id=write, row_count=rows,
                                 write_status="ok", attempt=1).model_dump(mode="json")

    r = stack.push("coordinator/completions", completion(5, write_id), message_id=f"true-{batch_id}")
    assert r.status_code == 200 and r.json()["result"] == "recorded"
    for n, forged in enumerate([completion(5, neighbours), completion(5, ids.new_write_id()), completion(4, second)]):
        r = stack.push("coordinator/completions", forged, message_id=f"late-forged-{batch_id}-{n}")
        assert r.status_code == 400 and "holds" in r.json()["error"], r.text
        r = stack.push("coordinator/dead-letters/completions", forged, message_id=f"late-forged-dl-{batch_id}-{n}")
        assert r.status_code == 200 and r.json()["result"] == "rejected", r.text
    # the same completion again, and the true completion of another attempt: duplicates, nothing changes
    for n, dup in enumerate([completion(5, write_id), completion(5, second)]):
        r = stack.push("coordinator/completions", dup, message_id=f"dup-{batch_id}-{n}")
        assert r.status_code == 200 and r.json()["result"] == "duplicate", r.text
    recorded = stack.store.get_item(batch_id, item)
    assert recorded["status"] == "completed" and recorded["write_id"] == write_id
    rejected = [d.to_dict() for d in stack.clients.fs.collection(REJECTED).stream()
                if d.to_dict()["message_id"].startswith(f"late-forged-dl-{batch_id}-")]
    assert len(rejected) == 3, "each forged dead letter is kept where an operator sees it"
    lines = [x for x in stack.log_lines("coordinator")
             if x.get("batch_id") == batch_id and x.get("event") == "completion_duplicate"]
    assert sorted(x["write_id"] for x in lines) == sorted([write_id, second]), "only the true ones were duplicates"
    stack.store.transition(batch_id, ["running"], {"status": "superseded"})  # leave nothing open
