"""Stalled batches (F4), the daily reconciliation (F9 layer 6) and schema incompatibility (F5), on the
real stack."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import requests
from google.cloud import bigquery

from batchline import ids
from batchline.consolidate import SchemaIncompatible, merge_staging
from batchline.ledger import compute
from batchline.messages import WorkMessage, encode
from batchline.state import CONSOLIDATED, Item


def _age_items(stack, batch_id: str, minutes: int, **extra) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)
    for it in stack.store.items(batch_id):
        stack.store.item_ref(batch_id, it["item_id"]).update({"updated_at": old, **extra})


def _registered_batch(stack, day: dt.date, players: int) -> tuple[str, list[Item]]:
    """A batch registered in state but never dispatched: the shape of work lost in transit."""
    stack.seed(day, players)
    items = [Item(f"player_{n:04d}", "g1") for n in range(players)]
    from batchline.local.provision import synthetic_context
    games = {r["player_lookup"]: r["game_id"] for r in synthetic_context(day, players)}
    items = [Item(i.item_id, games[i.item_id]) for i in items]
    batch_id = ids.new_batch_id(day)
    stack.store.create_batch(batch_id, day, items, force=True, faults=None, dispatch_token="test")
    stack.store.mark_running(batch_id, "test")
    return batch_id, items


def test_stalled_batch_is_redispatched_and_completes(stack, day):
    batch_id, items = _registered_batch(stack, day, 4)
    fresh = [r for r in stack.stall_check(stall_minutes=30) if r["batch_id"] == batch_id]
    assert fresh == [], "a recent batch is not stalled"
    _age_items(stack, batch_id, 45)
    reports = [r for r in stack.stall_check(stall_minutes=30) if r["batch_id"] == batch_id]
    assert reports and reports[0]["action"] == "redispatched"
    assert reports[0]["pending_items"] == sorted(i.item_id for i in items)
    batch = stack.wait(batch_id)
    assert batch["status"] == CONSOLIDATED and batch["merged_items"] == 4
    assert compute(stack.clients, batch_id, 0).ok


def test_still_stalled_after_redispatch_consolidates_partially_and_names_the_missing(stack, day):
    batch_id, items = _registered_batch(stack, day, 3)
    for it in items[:2]:  # two items get their work message; the third never does
        stack.clients.publish("work", encode(WorkMessage(batch_id=batch_id, game_date=day, item_id=it.item_id,
                                                         game_id=it.game_id)))
    deadline = time.monotonic() + 60
    while len(stack.store.items_with_status(batch_id, "completed")) < 2:
        assert time.monotonic() < deadline, "the two dispatched items should complete"
        time.sleep(0.3)
    _age_items(stack, batch_id, 45, redispatched_at=dt.datetime.now(dt.UTC))
    reports = [r for r in stack.stall_check(stall_minutes=30) if r["batch_id"] == batch_id]
    assert reports[0]["action"] == "consolidating_partial"
    assert reports[0]["pending_items"] == [items[2].item_id]
    batch = stack.wait(batch_id)
    assert batch["status"] == CONSOLIDATED
    assert batch["merged_items"] == 2 and batch["failed_items"] == [items[2].item_id]
    assert batch["coverage_pct"] == pytest.approx(66.67)
    ledger = compute(stack.clients, batch_id, 0)
    assert ledger.missing_items == [items[2].item_id] and not ledger.ok, "a partial batch is loud"


def test_min_completion_threshold_holds_back_partial_consolidation(stack, day):
    batch_id, _ = _registered_batch(stack, day, 2)
    _age_items(stack, batch_id, 45, redispatched_at=dt.datetime.now(dt.UTC))
    reports = [r for r in stack.stall_check(stall_minutes=30, min_completion_pct=50) if r["batch_id"] == batch_id]
    assert reports[0]["action"] == "below_min_completion"
    assert stack.store.get_batch(batch_id)["status"] == "running"
    # Held back on purpose, never quietly: every run reports it again (batch_stalled feeds an alert).
    again = [r for r in stack.stall_check(stall_minutes=30, min_completion_pct=50) if r["batch_id"] == batch_id]
    assert again[0]["action"] == "below_min_completion" and again[0]["pending_items"] == reports[0]["pending_items"]
    stack.store.transition(batch_id, ["running"], {"status": "superseded"})  # leave nothing open for other tests


def test_reconciliation_finds_the_gap_and_redispatches_it(stack, day):
    batch, ledger = stack.run(day, 6, faults="poison=player_0002")
    assert ledger.dead_lettered_ids == ["player_0002"]
    r = requests.post(stack.url("reconcile") + "/", json={"game_date": day.isoformat()}, timeout=120)
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["incomplete_items"] == ["player_0002"] and rec["action"] == "redispatched"
    gap = stack.wait(rec["redispatched_batch_id"])
    assert gap["status"] == CONSOLIDATED and gap["expected_items"] == 1 and gap["merged_items"] == 1
    again = requests.post(stack.url("reconcile") + "/", json={"game_date": day.isoformat()}, timeout=120).json()
    assert again["incomplete_items"] == [] and again["action"] == "none"
    s = stack.clients.settings
    n = list(stack.clients.bq.query(
        f"SELECT COUNT(*) AS n, COUNT(DISTINCT player_lookup) AS p FROM `{s.main_table_id}` WHERE game_date = @d",
        job_config=bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("d", "DATE", day)]),
    ).result())[0]
    assert (n["n"], n["p"]) == (30, 6)


def test_staging_lacking_a_newer_nullable_column_merges_with_nulls(stack, schema_settings, day):
    bq, s = stack.clients.bq, schema_settings
    batch_id = ids.new_batch_id(day)
    old_schema = list(bq.get_table(s.main_table_id).schema)
    tables = [stack.stage(s, batch_id, day, f"player_{n:04d}", old_schema) for n in range(3)]
    bq.query(f"ALTER TABLE `{s.main_table_id}` ADD COLUMN IF NOT EXISTS model_version STRING").result()
    table = bq.get_table(s.main_table_id)
    table.schema = [*old_schema, bigquery.SchemaField("model_version", "STRING", mode="NULLABLE")]
    bq.update_table(table, ["schema"])
    result = merge_staging(bq, s, batch_id, day, tables)
    assert result.affected_rows == 15 and result.verified_rows == 15 and result.verified_items == 3


def test_incompatible_staging_is_reported_by_column_before_anything_changes(stack, schema_settings, day):
    bq, s = stack.clients.bq, schema_settings
    batch_id = ids.new_batch_id(day)
    schema = [f if f.name != "confidence" else bigquery.SchemaField("confidence", "STRING", mode="REQUIRED")
              for f in bq.get_table(s.main_table_id).schema]
    good = stack.stage(s, batch_id, day, "player_0000", list(bq.get_table(s.main_table_id).schema))
    bad = stack.stage(s, batch_id, day, "player_0001", schema)
    with pytest.raises(SchemaIncompatible) as err:
        merge_staging(bq, s, batch_id, day, [good, bad])
    assert "confidence" in str(err.value) and bad in str(err.value) and good not in str(err.value)
    names = {t.table_id for t in bq.list_tables(f"{s.project}.{s.staging_dataset}")}
    assert {good, bad} <= names, "nothing is deleted on an incompatibility"
    rows = list(bq.query(f"SELECT COUNT(*) AS n FROM `{s.main_table_id}` WHERE batch_id = @b",
                         job_config=bigquery.QueryJobConfig(query_parameters=[
                             bigquery.ScalarQueryParameter("b", "STRING", batch_id)])).result())
    assert rows[0]["n"] == 0


def test_stall_check_publishes_a_claim_whose_claimant_died(stack, day):
    batch_id, items = _registered_batch(stack, day, 1)
    stack.store.record_completion(batch_id, items[0].item_id, ids.staging_table_name(batch_id, items[0].item_id), 5, 1)
    # The claimant won the claim and died before publishing; its message never came back.
    assert stack.store.claim_consolidation(batch_id, "all_items_terminal", claimant="dead-message")
    stack.store.set_batch_fields(batch_id, {
        "consolidation_requested_at": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=45)})
    reports = [r for r in stack.stall_check(stall_minutes=30) if r["batch_id"] == batch_id]
    assert reports == [{"batch_id": batch_id, "action": "consolidation_republished"}]
    batch = stack.wait(batch_id)
    # Its staging table never existed: consolidation finishes, and names the gap instead of hiding it.
    assert batch["status"] == CONSOLIDATED and batch["missing_items"] == [items[0].item_id]
    assert batch["coverage_pct"] == 0.0


def test_a_batch_too_large_for_one_statement_is_combined_in_chunks_and_still_merged_once(
        stack, schema_settings, day):
    bq, s = stack.clients.bq, schema_settings
    batch_id = ids.new_batch_id(day)
    schema = list(bq.get_table(s.main_table_id).schema)
    tables = [stack.stage(s, batch_id, day, f"player_{n:04d}", schema) for n in range(7)]
    result = merge_staging(bq, s, batch_id, day, tables, chunk=3)
    assert result.scratch_tables == [ids.combined_table_name(batch_id, n) for n in range(3)]
    assert result.affected_rows == 35 and result.verified_rows == 35 and result.verified_items == 7
    merges = [j for j in bq.list_jobs(all_users=True, max_results=5000)
              if getattr(j, "statement_type", None) == "MERGE" and batch_id in (j.query or "")]
    assert len(merges) == 1, "chunking adds DDL in the staging dataset, never a second MERGE"
    assert s.main_table_id in merges[0].query and ids.combined_table_name(batch_id, 2) in merges[0].query
