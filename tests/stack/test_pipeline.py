"""End-to-end behaviour on the real local stack: every assertion reads BigQuery, Firestore or Pub/Sub."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter

import requests
from google.cloud import bigquery

from batchline.adapters import staging
from batchline.domain import faults, ids
from batchline.domain.evidence import StagedWrite
from batchline.domain.messages import CompletionMessage, ConsolidationRequest, WorkMessage, encode
from batchline.domain.statuses import CONSOLIDATED, CONSOLIDATION_FAILED, SUPERSEDED
from batchline.flows.ledger import compute, main_table_dml_since
from batchline.layout import REJECTED


def _rows(stack, day: dt.date) -> list[dict]:
    s = stack.clients.settings
    job = stack.clients.bq.query(
        f"SELECT * FROM `{s.main_table_id}` WHERE game_date = @d",
        job_config=bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("d", "DATE", day)]))
    return [dict(r.items()) for r in job.result()]


def _players(n: int) -> list[str]:
    return [f"player_{i:04d}" for i in range(n)]


def _staging_tables(stack, batch_id: str) -> list[str]:
    """The batch's staging tables still in the staging dataset (its one table, or nothing)."""
    s = stack.clients.settings
    return [t.table_id for t in stack.clients.bq.list_tables(f"{s.project}.{s.staging_dataset}")
            if ids.batch_of_staging_table(t.table_id) == batch_id]


def _staged_items(stack, batch_id: str) -> dict[str, dict[str, StagedWrite]]:
    return staging.staged_writes(stack.clients.bq, stack.clients.settings, batch_id)


def test_clean_batch_merges_everything_with_one_dml(stack, day):
    batch, ledger = stack.run(day, 25)
    assert batch["status"] == CONSOLIDATED
    assert ledger.ok, ledger.problems
    assert (ledger.expected_items, ledger.merged_items, ledger.dead_lettered_items) == (25, 25, 0)
    assert ledger.missing_items == [] and ledger.duplicate_rows == 0 and ledger.staging_tables_left == 0
    assert ledger.main_table_mutating_dml == 1
    rows = _rows(stack, day)
    assert len(rows) == 25 * 5 and {r["batch_id"] for r in rows} == {batch["batch_id"]}
    assert batch["coverage_pct"] == 100.0 and batch["merged_rows"] == 125 and batch["staging_gap"] == 0


def test_staging_write_faults_are_retried_until_everything_merges(stack, day):
    spec = "staging_write=0.3,seed=11"
    # Draws are a function of (seed, item, attempt), so this spec's outcome is known in advance:
    # 10 of 30 first writes fail, and no item fails all of its deliveries.
    assert faults.parse(spec).exhausted_items(_players(30), stack.info.max_delivery_attempts) == []
    batch, ledger = stack.run(day, 30, faults=spec)
    assert ledger.ok, ledger.problems
    assert ledger.merged_items == 30 and ledger.dead_lettered_items == 0
    attempts = [i.get("attempts", 0) for i in stack.store.items(batch["batch_id"])]
    assert max(attempts) > 1, "faults were injected, so some items needed redelivery"
    assert ledger.main_table_mutating_dml == 1


def test_completion_publish_faults_do_not_lose_items(stack, day):
    spec = "completion_publish=0.4,seed=7"
    assert faults.parse(spec).exhausted_items(_players(20), stack.info.max_delivery_attempts) == []
    batch, ledger = stack.run(day, 20, faults=spec)
    assert ledger.ok, ledger.problems
    assert ledger.merged_items == 20 and ledger.duplicate_rows == 0
    assert max(i.get("attempts", 0) for i in stack.store.items(batch["batch_id"])) > 1


def test_abandoned_appends_stay_in_the_batch_table_yet_each_item_is_merged_exactly_once(stack, day):
    """The batch table's key property, end to end: appends are at-least-once (a delivery whose completion
    publish failed leaves its rows behind under its own write id, and the redelivery appends them again),
    yet the MERGE reads only the manifest (the write each completion named), so the main table gets
    exactly one row set per item."""
    spec = "completion_publish=0.5,seed=3"
    players, attempts = _players(10), stack.info.max_delivery_attempts
    f = faults.parse(spec)
    assert f.exhausted_items(players, attempts) == []
    failed = sum(next(n for n in range(1, attempts + 1) if not f.fails_attempt(p, n)) - 1 for p in players)
    assert failed == 6, "known in advance: 3 items fail 1, 1 and 4 publishes before one succeeds"
    batch, ledger = stack.run(day, 10, faults=spec)
    batch_id = batch["batch_id"]
    assert batch["status"] == CONSOLIDATED and ledger.ok, ledger.problems
    # Every acknowledged append, as the workers logged it: more writes than items reached the batch table.
    writes = {r["write_id"]: r["item"] for r in stack.log_lines("worker")
              if r.get("batch_id") == batch_id and r["event"] == "staging_write_succeeded"}
    assert len(writes) >= len(players) + failed, "each failed publish left a durable write behind"
    assert batch["abandoned_writes"] == len(writes) - len(players) > 0
    assert batch["merge_result"]["abandoned_writes"] == batch["abandoned_writes"]
    docs = {i["item_id"]: i for i in stack.store.items(batch_id)}
    manifest = stack.merged_manifest(batch)
    assert manifest == {p: docs[p]["write_id"] for p in players}, "each item merged from its completion's write"
    assert all(writes[w] == p for p, w in manifest.items())
    assert batch["recovered_items"] == [] and batch["completed_without_write"] == []
    assert (ledger.merged_items, ledger.merged_rows, ledger.duplicate_rows) == (10, 50, 0)
    assert ledger.main_table_mutating_dml == 1 and batch["merged_rows"] == 50
    rows = _rows(stack, day)
    assert Counter(r["player_lookup"] for r in rows) == dict.fromkeys(players, 5), "one row set per item"
    assert len({r["prediction_id"] for r in rows}) == 50
    assert batch["staging_table_dropped"] is True and _staging_tables(stack, batch_id) == []


def test_an_item_whose_every_publish_fails_is_dead_lettered_and_its_rows_recovered(stack, day):
    """Its rows were appended but never announced: the message is dead-lettered (loudly), and the
    consolidation still finds its writes in the batch table and merges one, recording the item as recovered."""
    spec = "completion_publish=0.8,seed=1"
    doomed = faults.parse(spec).exhausted_items(_players(20), stack.info.max_delivery_attempts)
    assert doomed == ["player_0002"]
    batch, ledger = stack.run(day, 20, faults=spec)
    assert ledger.ok, ledger.problems
    assert ledger.recovered_ids == doomed and ledger.dead_lettered_ids == [] and batch["failed_items"] == doomed
    assert batch["recovered_items"] == doomed
    assert ledger.merged_items == 20 and ledger.duplicate_rows == 0 and ledger.main_table_mutating_dml == 1
    assert sum(r["player_lookup"] == "player_0002" for r in _rows(stack, day)) == 5


def test_poison_item_is_dead_lettered_and_the_rest_consolidates(stack, day):
    batch, ledger = stack.run(day, 12, faults="poison=player_0003")
    assert batch["status"] == CONSOLIDATED
    assert ledger.dead_lettered_ids == ["player_0003"]
    assert ledger.merged_items == 11 and ledger.missing_items == [] and ledger.ok
    item = stack.store.get_item(batch["batch_id"], "player_0003")
    assert item["status"] == "failed"
    assert f"dead-lettered after {stack.info.max_delivery_attempts}" in item["failure_reason"]
    assert batch["failed_items"] == ["player_0003"]
    assert batch["staging_gap"] == 1 and batch["completed_without_write"] == []
    assert "player_0003" not in {r["player_lookup"] for r in _rows(stack, day)}
    # A completion for the dead-lettered item after its batch dropped the staging table: nothing left to
    # check or record; answered (no retry loop into the dead-letter queue) and logged as late, loudly.
    assert batch["staging_table_dropped"]
    late = CompletionMessage(batch_id=batch["batch_id"], item_id="player_0003",
                             staging_table=ids.batch_staging_table(batch["batch_id"]), write_id=ids.new_write_id(),
                             row_count=5, write_status="ok", attempt=1)
    r = stack.push("coordinator/completions", late.model_dump(mode="json"), message_id=f"late-{batch['batch_id']}")
    assert r.status_code == 200 and r.json()["result"] == "late", r.text
    assert stack.store.get_item(batch["batch_id"], "player_0003")["status"] == "failed", "nothing recorded"
    assert any(r.get("event") == "late_completion" and r.get("batch_id") == batch["batch_id"]
               and r.get("severity") == "ERROR" for r in stack.log_lines("coordinator"))


def test_duplicate_deliveries_never_duplicate_rows_or_consolidations(stack, day):
    stack.seed(day, 15)
    resp = stack.start(day)
    batch_id = resp.json()["batch_id"]
    # Every work message a second time through Pub/Sub, while the batch runs.
    items = stack.store.items(batch_id)
    for it in items:
        stack.clients.publish("work", encode(WorkMessage(batch_id=batch_id, game_date=day, item_id=it["item_id"],
                                                         game_id=it["game_id"])))
    batch = stack.wait(batch_id)
    assert batch["status"] == CONSOLIDATED
    # And late duplicates of every kind, delivered synchronously so the answers can be checked; each
    # completion names the write its item recorded.
    items = stack.store.items(batch_id)
    assert all(it["write_id"] for it in items)
    for it in items:
        work = WorkMessage(batch_id=batch_id, game_date=day, item_id=it["item_id"], game_id=it["game_id"])
        r = stack.push("worker/", work.model_dump(mode="json"))
        assert r.status_code == 200 and r.json()["status"] == "duplicate"
        done = CompletionMessage(batch_id=batch_id, item_id=it["item_id"],
                                 staging_table=ids.batch_staging_table(batch_id), write_id=it["write_id"],
                                 row_count=5, write_status="ok", attempt=1)
        r = stack.push("coordinator/completions", done.model_dump(mode="json"))
        assert r.status_code == 200 and r.json()["result"] == "duplicate"
    r = stack.push("coordinator/consolidate", ConsolidationRequest(batch_id=batch_id, reason="manual").model_dump())
    assert r.status_code == 200 and r.json()["result"] == "done"
    ledger = compute(stack.clients, batch_id, 0.0)
    assert ledger.ok, ledger.problems
    assert ledger.duplicate_rows == 0 and ledger.main_table_mutating_dml == 1 and ledger.merged_items == 15
    assert len(_rows(stack, day)) == 75 and _staging_tables(stack, batch_id) == []


def test_second_start_conflicts_and_force_supersedes(stack, day):
    stack.seed(day, 40)
    first = stack.start(day)
    assert first.status_code == 200
    first_id = first.json()["batch_id"]
    again = stack.start(day)
    assert again.status_code == 409 and again.json()["batch_id"] == first_id
    forced = stack.start(day, force=True)
    assert forced.status_code == 200 and forced.json()["superseded"] == first_id
    batch = stack.wait(forced.json()["batch_id"])
    assert batch["status"] == CONSOLIDATED
    assert stack.store.get_batch(first_id)["status"] == SUPERSEDED
    rows = _rows(stack, day)
    assert len(rows) == 200 and {r["batch_id"] for r in rows} == {batch["batch_id"]}


def test_forced_rerun_updates_rows_instead_of_duplicating(stack, day):
    first, _ = stack.run(day, 10)
    before = {r["prediction_id"]: r for r in _rows(stack, day)}
    second, ledger = stack.run(day, 10, force=True, seed=False)
    after = {r["prediction_id"]: r for r in _rows(stack, day)}
    assert ledger.ok and ledger.duplicate_rows == 0
    assert set(after) == set(before) and len(after) == 50
    assert {r["batch_id"] for r in after.values()} == {second["batch_id"]}
    for pid, row in after.items():
        assert row["created_at"] == before[pid]["created_at"], "created_at is kept on update"
        assert row["updated_at"] > before[pid]["updated_at"]
    assert main_table_dml_since(stack.clients, first["created_at"]) == 2  # one MERGE per batch


def test_main_table_with_an_extra_nullable_column_still_consolidates(stack, day):
    # F5: the main table gains a column (72 vs 63 in the incident); staging must keep working.
    bq = stack.clients.bq
    main = stack.clients.settings.main_table_id
    # bqemulator quirk: DDL changes its DuckDB table but not its metadata, update_table the reverse;
    # real BigQuery needs either one. Doing both keeps the emulator consistent.
    bq.query(f"ALTER TABLE `{main}` ADD COLUMN IF NOT EXISTS edge_score FLOAT64").result()
    table = bq.get_table(main)
    if "edge_score" not in {f.name for f in table.schema}:
        table.schema = [*table.schema, bigquery.SchemaField("edge_score", "FLOAT64", mode="NULLABLE")]
        bq.update_table(table, ["schema"])
    batch, ledger = stack.run(day, 8)
    assert batch["status"] == CONSOLIDATED and ledger.ok, (batch.get("error"), ledger.problems)
    rows = _rows(stack, day)
    assert len(rows) == 40 and all(r["edge_score"] is None for r in rows)


def test_zero_row_merge_is_a_failure_that_keeps_staging(stack, day):
    batch, ledger = stack.run(day, 6, faults="zero_merge=1")
    assert batch["status"] == CONSOLIDATION_FAILED
    assert "affected 0 rows" in batch["error"]
    assert _staging_tables(stack, batch["batch_id"]) == [ids.batch_staging_table(batch["batch_id"])]
    staged = _staged_items(stack, batch["batch_id"])
    assert len(staged) == 6 and all(sum(w.rows for w in ws.values()) >= 5 for ws in staged.values()), \
        "the evidence is kept"
    assert not ledger.ok and ledger.staging_tables_left == 1
    assert _rows(stack, day) == []


def test_bad_requests_get_clear_errors(stack, day):
    worker = stack.url("worker") + "/"
    assert requests.post(worker, data=b"not json", timeout=30).status_code == 400
    bad_b64 = {"message": {"data": "%%%", "messageId": "m1"}, "subscription": "s"}
    assert requests.post(worker, json=bad_b64, timeout=30).status_code == 400
    evil = {"batch_id": "20300101_abcdefabcdef`; DROP TABLE x; --", "game_date": "2030-01-01",
            "item_id": "player_0001", "game_id": "g1"}
    r = stack.push("worker/", evil)
    assert r.status_code == 400 and "invalid batch id" in r.json()["error"]
    r = stack.push("worker/", {"batch_id": "20300101_abcdefabcdef", "game_date": "2030-01-01",
                               "item_id": "player_0001", "game_id": "g1"})
    assert r.status_code == 404, "an unknown batch is not acknowledged"
    start = stack.url("coordinator") + "/start"
    assert requests.post(start, json={"game_date": "2026-02-30"}, timeout=30).status_code == 400
    assert requests.post(start, json={"game_date": "2030-01-01", "extra": 1}, timeout=30).status_code == 400
    r = requests.post(start, json={"game_date": day.isoformat()}, timeout=30)
    assert r.status_code == 400 and "no valid context rows" in r.json()["error"]
    assert requests.get(start, timeout=30).status_code == 405


def test_garbage_on_the_work_topic_is_dead_lettered_and_recorded(stack):
    marker = uuid.uuid4().hex
    garbage = f'{{"garbage": "{marker}"}}'.encode()
    stack.clients.publish("work", garbage)
    deadline = time.monotonic() + 60
    found = []
    while time.monotonic() < deadline and not found:
        # compared as base64 text: other rejected messages may hold data that is not base64 at all
        found = [d.to_dict() for d in stack.clients.fs.collection(REJECTED).stream()
                 if d.to_dict()["data"] == __import__("base64").b64encode(garbage)]
        time.sleep(0.5)
    assert found, "a malformed message must end as a visible rejected message"
    assert "invalid WorkMessage" in found[0]["reason"]


def test_contextless_date_and_invalid_context_rows(stack, day):
    from batchline.local.provision import seed_context
    rows = [{"game_date": day.isoformat(), "player_lookup": "player_0001", "game_id": "g1"},
            {"game_date": day.isoformat(), "player_lookup": "Bad Player;", "game_id": "g1"}]
    seed_context(stack.clients.bq, stack.clients.settings, day, rows)
    resp = stack.start(day)
    assert resp.status_code == 200 and resp.json()["invalid_context_rows"] == 1
    batch = stack.wait(resp.json()["batch_id"])
    assert batch["invalid_context_row_count"] == 1
    ledger = compute(stack.clients, batch["batch_id"], 0.0)
    assert ledger.missing_items == ["Bad Player;"] and not ledger.ok, "a bad schedule row is a loud gap"


def test_every_state_transition_reaches_stdout_as_structured_json(stack, day):
    batch, ledger = stack.run(day, 7, faults="poison=player_0004")
    batch_id = batch["batch_id"]
    worker = [r for r in stack.log_lines("worker") if r.get("batch_id") == batch_id]
    coord = [r for r in stack.log_lines("coordinator") if r.get("batch_id") == batch_id]
    assert all({"severity", "message", "event", "batch_id", "item", "time"} <= set(r) for r in worker + coord)
    staged = {r["item"] for r in worker if r["event"] == "staging_write_succeeded"}
    assert staged == {f"player_{n:04d}" for n in range(7)} - {"player_0004"}
    failed = [r for r in worker if r["event"] == "staging_write_failed" and r["item"] == "player_0004"]
    attempts = stack.info.max_delivery_attempts
    assert len(failed) == attempts and all(r["severity"] == "ERROR" for r in failed), "one line per failed attempt"
    answered = [r for r in worker if r["event"] == "fault_injected"]
    assert len(answered) == attempts and {r["item"] for r in answered} == {"player_0004"}, "the 503 lines name the item"
    events = [r["event"] for r in coord]
    for event in ("batch_created", "batch_dispatched", "item_completed", "item_dead_lettered",
                  "consolidation_requested", "staging_inventory", "staging_gap", "merge_verified",
                  "consolidation_succeeded", "coverage_low"):
        assert event in events, f"no {event} line for the batch"
    assert events.count("item_completed") == 6 and events.count("consolidation_succeeded") == 1
