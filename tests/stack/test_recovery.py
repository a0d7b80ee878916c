"""Stalled batches (F4), the daily reconciliation (F9 layer 6) and schema incompatibility (F5), on the
real stack."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
import requests
from google.cloud import bigquery

from batchline.adapters import staging
from batchline.domain import ids
from batchline.domain.errors import SchemaIncompatible
from batchline.domain.messages import WorkMessage, encode
from batchline.domain.predictor import SyntheticPredictor
from batchline.domain.runs import Item
from batchline.domain.statuses import CONSOLIDATED
from batchline.flows.ledger import compute
from batchline.flows.work import build_rows


def _age_items(stack, batch_id: str, minutes: int, **extra) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)
    for it in stack.store.items(batch_id):
        stack.store.item_ref(batch_id, it["item_id"]).update({"updated_at": old, **extra})


def _registered_batch(stack, day: dt.date, players: int) -> tuple[str, list[Item]]:
    """A batch registered in state, its staging table created (as a dispatch does), and no work message
    published: the shape of work lost in transit."""
    stack.seed(day, players)
    items = [Item(f"player_{n:04d}", "g1") for n in range(players)]
    from batchline.local.provision import synthetic_context
    games = {r["player_lookup"]: r["game_id"] for r in synthetic_context(day, players)}
    items = [Item(i.item_id, games[i.item_id]) for i in items]
    batch_id = ids.new_batch_id(day)
    stack.store.create_batch(batch_id, day, items, force=True, faults=None, dispatch_token="test")
    staging.create_batch_table(stack.clients.bq, stack.clients.settings, batch_id)
    stack.store.mark_running(batch_id, "test")
    return batch_id, items


def _main_rows(bq, s, batch_id: str) -> list[dict]:
    return [dict(r.items()) for r in bq.query(
        f"SELECT * FROM `{s.main_table_id}` WHERE batch_id = @b", job_config=bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("b", "STRING", batch_id)])).result()]


def _merges(bq, batch_id: str) -> list:
    return [j for j in bq.list_jobs(all_users=True, max_results=5000)
            if getattr(j, "statement_type", None) == "MERGE" and batch_id in (j.query or "")]


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
    manifest = {f"player_{n:04d}": stack.stage(s, batch_id, day, f"player_{n:04d}", old_schema) for n in range(3)}
    bq.query(f"ALTER TABLE `{s.main_table_id}` ADD COLUMN IF NOT EXISTS model_version STRING").result()
    table = bq.get_table(s.main_table_id)
    table.schema = [*old_schema, bigquery.SchemaField("model_version", "STRING", mode="NULLABLE")]
    bq.update_table(table, ["schema"])
    result = stack.merge_pinned(s, batch_id, day, manifest)
    assert all(r["model_version"] is None for r in _main_rows(bq, s, batch_id))
    assert result.affected_rows == 15 and result.verified_rows == 15 and result.verified_items == 3


def test_incompatible_staging_is_reported_by_column_before_anything_changes(stack, schema_settings, day):
    bq, s = stack.clients.bq, schema_settings
    batch_id = ids.new_batch_id(day)
    table = ids.batch_staging_table(batch_id)
    schema = [f if f.name != "confidence" else bigquery.SchemaField("confidence", "STRING", mode="REQUIRED")
              for f in bq.get_table(s.main_table_id).schema]
    # A batch table created from a main-table schema that has since changed a column's type; its rows
    # were appended as that schema wanted them.
    table_id = s.staging_table_id(table)
    bq.create_table(bigquery.Table(table_id, schema=staging.staging_schema(schema)))
    manifest = {}
    for item in ("player_0000", "player_0001"):
        manifest[item] = ids.new_write_id()
        rows = build_rows(WorkMessage(batch_id=batch_id, game_date=day, item_id=item, game_id="g1"),
                          SyntheticPredictor(), dt.datetime.now(dt.UTC))
        stack.clients.appender.append(table_id, staging.staging_schema(schema), [
            {**r, "confidence": str(r["confidence"]), staging.ITEM_COLUMN: item,
             staging.WRITE_COLUMN: manifest[item]} for r in rows])
    with pytest.raises(SchemaIncompatible) as err:
        stack.merge_pinned(s, batch_id, day, manifest)
    assert table in str(err.value)
    assert set(re.findall(r"column (\w+)", str(err.value))) == {"confidence"}, "only the offending column is named"
    staged = staging.staged_writes(bq, s, batch_id)
    assert {i: set(ws) for i, ws in staged.items()} == {i: {w} for i, w in manifest.items()}, \
        "nothing is deleted on an incompatibility"
    assert _main_rows(bq, s, batch_id) == [] and _merges(bq, batch_id) == []


def test_stall_check_publishes_a_claim_whose_claimant_died(stack, day):
    batch_id, items = _registered_batch(stack, day, 1)
    stack.store.record_completion(batch_id, items[0].item_id, ids.batch_staging_table(batch_id), 5, 1,
                                  ids.new_write_id())
    # The claimant won the claim and died before publishing; its message never came back.
    assert stack.store.claim_consolidation(batch_id, "all_items_terminal", claimant="dead-message")
    stack.store.set_batch_fields(batch_id, {
        "consolidation_requested_at": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=45)})
    reports = [r for r in stack.stall_check(stall_minutes=30) if r["batch_id"] == batch_id]
    assert reports == [{"batch_id": batch_id, "action": "consolidation_republished"}]
    batch = stack.wait(batch_id)
    # The write its completion names never reached the batch table: consolidation finishes, and names the
    # gap instead of hiding it.
    assert batch["status"] == CONSOLIDATED and batch["missing_items"] == [items[0].item_id]
    assert batch["completed_without_write"] == [items[0].item_id]
    assert batch["coverage_pct"] == 0.0


def test_a_batch_merge_reads_only_its_manifest_writes_in_one_merge(stack, schema_settings, day):
    """A redelivered item leaves two writes in the batch table; the MERGE takes the one the manifest
    names, for every item, and nothing else: one MERGE job, exactly the manifest's rows."""
    bq, s = stack.clients.bq, schema_settings
    batch_id = ids.new_batch_id(day)
    schema = list(bq.get_table(s.main_table_id).schema)
    first = stack.stage(s, batch_id, day, "player_0000", schema)  # an attempt whose completion was lost
    again = stack.stage(s, batch_id, day, "player_0000", schema)  # its redelivery
    other = stack.stage(s, batch_id, day, "player_0001", schema)
    assert len({first, again, other}) == 3
    staged = [dict(r.items()) for r in bq.query(
        f"SELECT prediction_id, updated_at, {staging.ITEM_COLUMN} AS item, {staging.WRITE_COLUMN} AS w "
        f"FROM `{s.staging_table_id(ids.batch_staging_table(batch_id))}`").result()]
    assert len(staged) == 15
    manifest = {"player_0000": again, "player_0001": other}
    result = stack.merge_pinned(s, batch_id, day, manifest)
    assert result.staged_rows == 10 and result.affected_rows == 10
    assert result.verified_rows == 10 and result.verified_items == 2
    chosen = {r["prediction_id"]: r["updated_at"] for r in staged if (r["item"], r["w"]) in manifest.items()}
    assert len(chosen) == 10
    assert {r["updated_at"] for r in staged if r["w"] == first}.isdisjoint(chosen.values()), \
        "the two attempts' rows can be told apart"
    main = {r["prediction_id"]: r["updated_at"] for r in _main_rows(bq, s, batch_id)}
    assert main == chosen, "exactly the manifest writes' rows are merged, not the abandoned attempt's"
    merges = _merges(bq, batch_id)
    assert len(merges) == 1, "one MERGE per batch, whatever the batch table holds"
    assert s.main_table_id in merges[0].query and ids.batch_staging_table(batch_id) in merges[0].query
