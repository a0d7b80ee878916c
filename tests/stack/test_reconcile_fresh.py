"""Issue 8 on the real stack: a start refuses stale inputs; the reconciliation merges (or drops, when a
newer run replaced them) orphaned staged rows; reconciling twice never starts two repair batches."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import requests
from google.cloud import bigquery
from google.cloud.firestore_v1.base_query import FieldFilter

from batchline.adapters import manifests, staging
from batchline.adapters.clients import Clients
from batchline.domain import ids
from batchline.domain.runs import Item
from batchline.domain.statuses import CONSOLIDATED
from batchline.flows.orphans import handle_orphans
from batchline.local.provision import seed_context, synthetic_context


def test_stale_inputs_are_refused_and_logged(stack, day):
    loaded = dt.datetime.now(dt.UTC) - dt.timedelta(hours=30)
    seed_context(stack.clients.bq, stack.clients.settings, day, synthetic_context(day, 3), loaded_at=loaded)
    r = stack.start(day)
    assert r.status_code == 424, r.text
    body = r.json()
    assert body["game_date"] == day.isoformat() and body["max_age_hours"] == 24
    assert dt.datetime.fromisoformat(body["newest_loaded_at"]) == loaded
    assert stack.store.active_batch_of(day) is None, "nothing was registered for the date"
    refused = [x for x in stack.log_lines("coordinator")
               if x.get("event") == "start_refused_stale_inputs" and x.get("game_date") == day.isoformat()]
    assert len(refused) == 1 and refused[0]["severity"] == "ERROR" and refused[0]["max_age_hours"] == 24
    assert refused[0]["context_rows"] == 3
    # No rows at all stays a different answer (400), not "stale".
    empty = stack.start(day + dt.timedelta(days=3000))
    assert empty.status_code == 400 and "no valid context rows" in empty.json()["error"]
    # Once the upstream load is redone, the same start runs.
    batch, ledger = stack.run(day, 3)
    assert batch["status"] == CONSOLIDATED and ledger.ok


def _q(stack, sql: str, day: dt.date) -> list[dict]:
    job = stack.clients.bq.query(sql.format(main=f"`{stack.clients.settings.main_table_id}`"),
                                 job_config=bigquery.QueryJobConfig(query_parameters=[
                                     bigquery.ScalarQueryParameter("d", "DATE", day)]))
    return [dict(r.items()) for r in job.result()]


def _reconcile(stack, day: dt.date, **body) -> dict:
    r = requests.post(stack.url("reconcile") + "/", json={"game_date": day.isoformat(), **body}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def _staging_names(stack) -> set[str]:
    s = stack.clients.settings
    return {t.table_id for t in stack.clients.bq.list_tables(f"{s.project}.{s.staging_dataset}", max_results=100000)}


def _orphan_merges(stack) -> list:
    return [j for j in stack.clients.bq.list_jobs(all_users=True, max_results=5000)
            if getattr(j, "statement_type", None) == "MERGE" and "_g1000_" in j.job_id]


def test_orphaned_unmerged_staged_rows_are_merged_verified_then_dropped(stack, day):
    s = stack.clients.settings
    old, _ = stack.run(day, 4, faults="poison=player_0003")
    new, _ = stack.run(day, 4, faults="poison=player_0003", force=True)
    assert old["failed_items"] == new["failed_items"] == ["player_0003"]
    old_t, new_t = ids.batch_staging_table(old["batch_id"]), ids.batch_staging_table(new["batch_id"])
    assert not {old_t, new_t} & _staging_names(stack), "both batches dropped their tables after consolidating"
    # Late writes: rows that reached a batch table after its MERGE. The newer run's rows of the failed
    # item fill a gap (two attempts of it, of which one is merged); the older run's rows of its failed
    # item are superseded by the newer run's.
    late = {stack.stage(s, new["batch_id"], day, "player_0003") for _ in range(2)}
    stack.stage(s, old["batch_id"], day, "player_0003")
    # And other writes of items the runs' own verified MERGEs merged (abandoned attempts that landed
    # in a table whose drop was lost): never merged again, nothing to report.
    stack.stage(s, new["batch_id"], day, "player_0000")
    stack.stage(s, old["batch_id"], day, "player_0001")
    assert "player_0001" in stack.merged_manifest(old)
    assert "player_0000" in stack.merged_manifest(new)
    assert _q(stack, "SELECT COUNT(*) AS n FROM {main} WHERE game_date = @d AND is_active "
                     "AND player_lookup = 'player_0003'", day)[0]["n"] == 0
    merged_0000 = _q(stack, "SELECT prediction_id, updated_at FROM {main} WHERE game_date = @d "
                            "AND player_lookup = 'player_0000' ORDER BY prediction_id", day)
    merges_before = len(_orphan_merges(stack))

    rec = _reconcile(stack, day)
    assert rec["orphans_merged"] == [f"{new_t}/player_0003"]
    assert rec["orphans_dropped"] == [f"{old_t}/player_0003"]
    assert not [k for k in rec["orphans_kept"] if k.split("/")[0] in (old_t, new_t)], rec["orphans_kept"]
    assert rec["incomplete_items"] == [] and rec["action"] == "none", "the merged orphan closed the gap"
    assert not {old_t, new_t} & _staging_names(stack), "dropped once every item in them was merged or superseded"
    rows = _q(stack, "SELECT player_lookup, batch_id, COUNT(*) AS n FROM {main} WHERE game_date = @d AND is_active "
                     "GROUP BY player_lookup, batch_id ORDER BY player_lookup", day)
    assert rows == [{"player_lookup": f"player_{n:04d}", "batch_id": new["batch_id"], "n": 5} for n in range(4)], \
        "one active row per player and system, all from the newest run: the older orphans overwrote nothing"
    assert _q(stack, "SELECT COUNT(*) AS n FROM {main} WHERE game_date = @d AND batch_id = '"
                     + old["batch_id"] + "' AND player_lookup = 'player_0003'", day)[0]["n"] == 0
    assert _q(stack, "SELECT prediction_id, updated_at FROM {main} WHERE game_date = @d "
                     "AND player_lookup = 'player_0000' ORDER BY prediction_id", day) == merged_0000, \
        "an item its batch merged is not merged again"
    after = stack.store.get_batch(new["batch_id"])
    record = after["orphans_merged"]
    assert len(record) == 1 and record[0]["items"] == 1 and record[0]["rows"] == 5
    assert manifests.merged_items(stack.clients.bq, stack.clients.settings, new["batch_id"],
                                  [record[0]["pin"]]) == {"player_0003"}, "the orphan MERGE's own pin"
    assert record[0]["job_id"].startswith(f"batchline_merge_{new['batch_id']}_g1000_")
    assert after["orphan_merge_pending"] is None and not after.get("orphans_dropped")
    dropped = stack.store.get_batch(old["batch_id"])["orphans_dropped"]
    assert len(dropped) == 1 and dropped[0]["newer_batches"] == [new["batch_id"]]
    assert dropped[0]["items"] == ["player_0003"]
    assert len(_orphan_merges(stack)) == merges_before + 1, "one MERGE for the orphans"
    assert len(late) == 2, "two distinct attempts were staged, and the main table holds 5 rows of one"

    again = _reconcile(stack, day)
    assert again["orphans_merged"] == [] and again["orphans_dropped"] == [] and again["action"] == "none"
    assert len(_orphan_merges(stack)) == merges_before + 1, "a second reconciliation changes nothing"


def test_an_orphan_of_an_active_batch_is_left_to_it(stack, day):
    batch_id, _ = _registered_running_batch(stack, day)
    s = stack.clients.settings
    stack.stage(s, batch_id, day, "player_0000")
    table = ids.batch_staging_table(batch_id)
    rec = _reconcile(stack, day)
    named = [k for k in [*rec["orphans_kept"], *rec["orphans_merged"], *rec["orphans_dropped"]]
             if k.split("/")[0] == table]
    assert named == [], "young: not an orphan yet"
    assert table in _staging_names(stack)
    # Once older than BATCHLINE_ORPHAN_AGE_HOURS (0 here stands for "the age has passed") it is reported,
    # and still neither merged nor dropped: the stall check owns an active batch's table.
    aged = handle_orphans(Clients(replace(s, orphan_age_hours=0)), day, {"player_0000"})
    assert aged.kept[table].startswith("batch still running")
    assert not [k for k in aged.merged + aged.dropped if k.split("/")[0] == table]
    assert table in _staging_names(stack)
    assert set(staging.staged_writes(stack.clients.bq, s, batch_id)) == {"player_0000"}, "its rows untouched"
    stack.store.transition(batch_id, ["running"], {"status": "superseded"})  # leave nothing open


def _registered_running_batch(stack, day: dt.date) -> tuple[str, list[Item]]:
    stack.seed(day, 1)
    items = [Item("player_0000", synthetic_context(day, 1)[0]["game_id"])]
    batch_id = ids.new_batch_id(day)
    stack.store.create_batch(batch_id, day, items, force=True, faults=None, dispatch_token="test")
    stack.store.mark_running(batch_id, "test")
    return batch_id, items


def _repair_batches(stack, day: dt.date) -> list[dict]:
    q = stack.clients.fs.collection("batches").where(filter=FieldFilter("game_date", "==", day.isoformat()))
    return [b for b in (d.to_dict() for d in q.stream()) if b.get("only_items")]


def test_reconciling_twice_starts_one_repair_batch(stack, day):
    batch, ledger = stack.run(day, 4, faults="poison=player_0002")
    assert ledger.dead_lettered_ids == ["player_0002"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = list(pool.map(lambda _: _reconcile(stack, day), range(2)))
    repairs = _repair_batches(stack, day)
    assert len(repairs) == 1, "two concurrent reconciliations, one repair batch"
    assert sorted(r["action"] for r in first)[1] == "redispatched"
    assert [r["redispatched_batch_id"] for r in first].count(repairs[0]["batch_id"]) == 1
    assert stack.wait(repairs[0]["batch_id"])["status"] == CONSOLIDATED
    # The gap persists after its repair (here: the repaired rows are withdrawn again, as a poison item
    # would leave them missing): the next reconciliation reports it and starts nothing.
    _q(stack, "UPDATE {main} SET is_active = FALSE WHERE game_date = @d AND player_lookup = 'player_0002'", day)
    later = _reconcile(stack, day)
    assert later["incomplete_items"] == ["player_0002"] and later["action"] == "repair_already_attempted"
    assert later["previous_repair_batch_id"] == repairs[0]["batch_id"] and later["redispatched_batch_id"] is None
    assert len(_repair_batches(stack, day)) == 1
    # An operator who fixed the cause asks for another repair explicitly.
    forced = _reconcile(stack, day, repair=True)
    assert forced["action"] == "redispatched" and len(_repair_batches(stack, day)) == 2
    assert stack.wait(forced["redispatched_batch_id"])["status"] == CONSOLIDATED


def test_a_complete_date_reconciles_ok_whatever_another_date_left(stack, day):
    """Issue 17.4: a date's verdict counts that date's tables; other dates' tables are reported, not failed."""
    import json

    from typer.testing import CliRunner

    from batchline.ops.cli import app

    other = day + dt.timedelta(days=4000)  # a date no other test uses
    failed, _ = stack.run(other, 2, faults="zero_merge=1")
    assert failed["status"] == "consolidation_failed", "its staging table is kept"
    kept = ids.batch_staging_table(failed["batch_id"])
    batch, ledger = stack.run(day, 3)
    assert ledger.complete

    def reconcile_cli(d: dt.date):
        result = CliRunner().invoke(app, ["reconcile", d.isoformat(), "--json", "--state-dir", stack.info.state_dir])
        return result, json.loads(result.stdout)

    result, out = reconcile_cli(day)
    assert result.exit_code == 0, result.output
    assert out["result"]["incomplete_items"] == [] and out["result"]["orphaned_staging_tables"] == []
    assert kept in out["result"]["other_dates_staging_tables"], "reported, with the date to reconcile"
    assert other.isoformat() in out["result"]["other_dates_staging_tables"][kept]
    verdicts = [x for x in stack.log_lines("coordinator") if x.get("game_date") == day.isoformat()
                and x.get("event", "").startswith("reconciliation_")]
    assert verdicts, "the control path's reconciliation runs in the coordinator and logs its verdict"
    assert verdicts[-1]["event"] == "reconciliation_ok" and verdicts[-1]["severity"] == "INFO"
    assert verdicts[-1]["other_dates_staging_tables"] >= 1
    # the other date's own verdict still counts its table
    result, out = reconcile_cli(other)
    assert result.exit_code == 1 and kept in out["result"]["orphaned_staging_tables"]


def test_a_superseded_failed_batchs_rows_are_finished_per_item_not_kept_for_a_refused_reopen(stack, day):
    """Issue 17.5: once a newer run replaced a batch whose consolidation failed, its re-open is refused;
    so its kept table is finished per item like any ended batch's (here: one item the newer run did
    not merge is merged from it, the others are superseded), instead of kept for that re-open."""
    older, _ = stack.run(day, 3, faults="zero_merge=1")
    assert older["status"] == "consolidation_failed"
    newer, _ = stack.run(day, 3, force=True, seed=False, faults="poison=player_0002")
    assert newer["status"] == CONSOLIDATED and newer["failed_items"] == ["player_0002"]
    old_t = ids.batch_staging_table(older["batch_id"])
    rec = _reconcile(stack, day)
    assert rec["orphans_merged"] == [f"{old_t}/player_0002"], rec
    assert rec["orphans_dropped"] == [f"{old_t}/player_0000", f"{old_t}/player_0001"]
    assert rec["incomplete_items"] == [] and old_t not in _staging_names(stack)
    rows = _q(stack, "SELECT player_lookup, batch_id, COUNT(*) AS n FROM {main} WHERE game_date = @d AND is_active "
                     "GROUP BY player_lookup, batch_id ORDER BY player_lookup", day)
    assert [(r["player_lookup"], r["batch_id"], r["n"]) for r in rows] == [
        ("player_0000", newer["batch_id"], 5), ("player_0001", newer["batch_id"], 5),
        ("player_0002", older["batch_id"], 5)]
