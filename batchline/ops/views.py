"""What `batchline status` and `batchline audit` report, computed from the systems of record:
batch state in Firestore, rows in the main table. Plain dicts (the `--json` shapes)."""

from __future__ import annotations

import datetime as dt

from google.cloud import bigquery

from batchline import lifecycle as lc
from batchline.audit import STATES, partition
from batchline.clients import Clients
from batchline.consolidate import active_duplicates_sql, batch_params
from batchline.delivery_errors import FAILED_DELIVERIES, LAST_ERROR
from batchline.state import BatchStore

PHASES = (("dispatch", "created_at", "dispatched_at"),
          ("work", "dispatched_at", "consolidation_requested_at"),
          ("consolidation", "consolidation_requested_at", "consolidated_at"),
          ("total", "created_at", "consolidated_at"))


def _iso(v) -> str | None:
    return v.isoformat() if isinstance(v, dt.datetime) else v


def next_steps(batch: dict, counts: dict[str, int], dead_lettered: list[dict]) -> list[str]:
    """What an operator should do next; empty when nothing is needed."""
    b, status = batch["batch_id"], batch["status"]
    steps: list[str] = []
    if status in lc.ACTIVE_STATUSES:
        steps.append(f"in progress ({status}); watch with `batchline status {b}`. The stall check moves a "
                     f"batch without progress on after its stall period")
    elif status == lc.CONSOLIDATION_FAILED and batch.get("failure_kind") == lc.MERGED_UNRECORDED:
        steps.append(f"the MERGE {batch.get('merged_job_id')} committed: the rows ARE in the main table, only its "
                     f"record is missing ({batch.get('error')}). Do not re-run the date; fix the cause, then "
                     f"`batchline consolidate {b}` records that job without a second MERGE")
    elif status == lc.CONSOLIDATION_FAILED:
        how = ("the stall check re-opens a transient failure by itself, at most "
               f"{lc.MAX_AUTO_REOPENS} times; or " if batch.get("failure_kind") == lc.TRANSIENT else "")
        steps.append(f"consolidation failed ({batch.get('error')}); the staging table is kept: {how}fix the cause, "
                     f"then `batchline consolidate {b}`")
    elif status == lc.DISPATCH_FAILED:
        steps.append(f"dispatch failed ({batch.get('error')}): `batchline start {batch['game_date']}` again")
    elif status == lc.SUPERSEDED:
        steps.append(f"superseded by {batch.get('superseded_by')}: see `batchline status {batch.get('superseded_by')}`")
    unreplayed = [i["item_id"] for i in dead_lettered if not i.get("replayed_in")]
    if unreplayed and status not in lc.ACTIVE_STATUSES:
        steps.append(f"{len(unreplayed)} dead-lettered items: fix the cause, then `batchline dlq replay --batch {b}`")
    if batch.get("missing_items") and status == lc.CONSOLIDATED:
        steps.append(f"{len(batch['missing_items'])} items missing: "
                     f"`batchline reconcile {batch['game_date']} --repair`")
    return steps


def status(clients: Clients, batch_id: str) -> dict:
    store = BatchStore(clients.fs)
    batch = store.get_batch(batch_id)
    if batch is None:
        raise LookupError(f"no batch {batch_id}")
    counts = {s: store.count_items(batch_id, s) for s in (lc.PENDING, lc.COMPLETED, lc.FAILED)}
    failed = store.items_with_status(batch_id, lc.FAILED)
    dead = [i for i in failed if i.get("dead_lettered_at")]
    timings = {name: round((batch[b] - batch[a]).total_seconds(), 1)
               for name, a, b in PHASES if batch.get(a) and batch.get(b)}
    merge = batch.get("merge_result") or {}
    steps = next_steps(batch, counts, dead)
    return {
        "batch_id": batch_id, "game_date": batch["game_date"], "status": batch["status"],
        "expected_items": batch.get("expected_items"), "items": counts,
        "dead_lettered_items": len(dead), "repair_batch": batch.get("only_items") is not None,
        "timings_s": timings,
        "times": {k: _iso(batch.get(k)) for k in ("created_at", "dispatched_at", "consolidation_requested_at",
                                                  "consolidated_at", "updated_at")},
        "gaps": {"failed_items": [{"item_id": i["item_id"], "reason": i.get("failure_reason"),
                                   "dead_lettered": bool(i.get("dead_lettered_at")),
                                   "replayed_in": i.get("replayed_in"), "last_error": i.get(LAST_ERROR),
                                   "failed_deliveries": i.get(FAILED_DELIVERIES)} for i in failed][:500],
                 "missing_items": batch.get("missing_items") or [], "staging_gap": batch.get("staging_gap"),
                 "completed_without_write": batch.get("completed_without_write") or []},
        "consolidation": {
            "generation": batch.get("consolidation_generation") or 0, "reason": batch.get("consolidation_reason"),
            "merge_job_id": merge.get("job_id"), "merged_items": batch.get("merged_items"),
            "merged_rows": batch.get("merged_rows"), "coverage_pct": batch.get("coverage_pct"),
            "recovered_items": batch.get("recovered_items") or [], "error": batch.get("error"),
            "failure_kind": batch.get("failure_kind"), "reopen_refused": batch.get("reopen_refused"),
            "main_table_dml_jobs": len(batch.get("main_table_dml_jobs") or [])},
        "superseded_by": batch.get("superseded_by"),
        "next_steps": steps,
        "needs_attention": (batch["status"] in (lc.CONSOLIDATION_FAILED, lc.DISPATCH_FAILED)
                            or any(not i.get("replayed_in") for i in dead)
                            or bool(batch.get("missing_items"))),
    }


def audit(clients: Clients, batch_id: str) -> dict:
    """Every item the batch expected, in exactly one of audit.STATES; counted from the main table."""
    s = clients.settings
    store = BatchStore(clients.fs)
    batch = store.get_batch(batch_id)
    if batch is None:
        raise LookupError(f"no batch {batch_id}")
    items = {i["item_id"]: i for i in store.items(batch_id)}
    d = bigquery.ScalarQueryParameter("d", "DATE", dt.date.fromisoformat(batch["game_date"]))
    b = bigquery.ScalarQueryParameter("b", "STRING", batch_id)

    def query(sql: str, params: list) -> list:
        return list(clients.bq.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params)).result())

    rows = {r["player_lookup"]: int(r["n"]) for r in query(
        f"SELECT player_lookup, COUNT(*) AS n FROM `{s.main_table_id}` WHERE game_date = @d AND batch_id = @b "
        f"GROUP BY player_lookup", [d, b])}
    dup = query(f"SELECT COUNT(*) AS n, COUNT(DISTINCT prediction_id) AS k FROM `{s.main_table_id}` "
                f"WHERE game_date = @d", [d])[0]
    # What a consumer would double count: active rows beyond one per (player, system, prop).
    duplicate_active = int(query(active_duplicates_sql(f"`{s.main_table_id}`"),
                                 batch_params(batch_id, dt.date.fromisoformat(batch["game_date"])))[0]["dup"])
    active: dict[str, dict[str, int]] = {}
    for r in query(f"SELECT player_lookup, batch_id, COUNT(*) AS n FROM `{s.main_table_id}` "
                   f"WHERE game_date = @d AND is_active GROUP BY player_lookup, batch_id", [d]):
        active.setdefault(r["player_lookup"], {})[r["batch_id"]] = int(r["n"])
    # Items this batch's verified MERGE wrote whose rows a later run of the date has since updated
    # (a MERGE updates matching rows, batch id included): merged, and still in the main table.
    merged_by_batch = set((batch.get("merge_result") or {}).get("manifest") or {})
    overwritten = {i: sorted(active[i]) for i in merged_by_batch - set(rows) if active.get(i)}
    dead = {k for k, i in items.items() if i.get("dead_lettered_at")}
    parts = partition(items, set(rows) | set(overwritten), dead)
    detail = []
    for state in STATES:
        for item_id in parts[state]:
            i = items[item_id]
            entry = {"item_id": item_id, "state": state, "rows": rows.get(item_id, 0), "item_status": i["status"]}
            if item_id in overwritten:
                entry.update(rows=sum(active[item_id].values()), overwritten_by=overwritten[item_id])
            if state in ("dead_lettered", "missing", "recovered"):
                entry.update(reason=i.get("failure_reason"), attempts=i.get("attempts"), last_error=i.get(LAST_ERROR),
                             failed_deliveries=i.get(FAILED_DELIVERIES),
                             replayed_in=i.get("replayed_in"), active_rows_from=sorted(active.get(item_id, {})))
            detail.append(entry)
    duplicate_rows = int(dup["n"]) - int(dup["k"])
    counts = {state: len(parts[state]) for state in STATES}
    problems = []
    if parts["missing"]:
        problems.append(f"{len(parts['missing'])} items neither merged nor dead-lettered")
    if duplicate_rows or duplicate_active:
        problems.append(f"{duplicate_rows} duplicate rows ({duplicate_active} active) in the main table for the date")
    return {
        "batch_id": batch_id, "game_date": batch["game_date"], "batch_status": batch["status"],
        "expected_items": len(items), "counts": counts, "sum": sum(counts.values()),
        "merged_rows": sum(rows.values()), "overwritten_by_later_runs": len(overwritten),
        "unexpected_merged_items": sorted(set(rows) - set(items)),
        "duplicate_rows": duplicate_rows, "duplicate_active_rows": duplicate_active,
        "items": detail, "problems": problems, "ok": not problems,
    }
