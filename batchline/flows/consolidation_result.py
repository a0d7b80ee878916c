"""The last phase of a consolidation, after its MERGE is verified and recorded: the rows of earlier
runs the date keeps, the staging table dropped (or kept for late rows), the batch's result recorded
under its lease, coverage alerts, and the summary published once."""

from __future__ import annotations

import datetime as dt

from batchline.adapters import merge as cons
from batchline.adapters.batch_store import now
from batchline.adapters.clients import Clients
from batchline.domain.evidence import Inventory
from batchline.domain.messages import BatchSummary, encode
from batchline.domain.statuses import CONSOLIDATED
from batchline.flows import merge_record as merge_recovery
from batchline.flows.merge_plan import capped
from batchline.logs import log_event


def kept_previous(clients: Clients, batch_id: str, game_date: dt.date, merged: set[str]) -> dict[str, str]:
    """Players this batch did not merge whose earlier rows stay active: player -> the batch that wrote them."""
    rows = cons.kept_previous(clients.bq, clients.settings, batch_id, game_date)
    kept = {player: batch for player, batch in rows.items() if player not in merged}
    if kept:
        log_event("kept_previous_rows", severity="WARNING", batch_id=batch_id, count=len(kept),
                  items=sorted(kept)[:200], message="these players keep rows of an earlier run of the date")
    return dict(sorted(kept.items())[:1000])


def drop_staging(clients: Clients, batch_id: str, staged_rows_total: int) -> bool:
    """Drop the batch staging table after verification, unless rows arrived since the inventory (a
    worker that checked the batch was open just before consolidation): then the table is kept for the
    daily reconciliation, which merges or supersedes those rows (batchline/flows/orphans.py). The count and
    the drop are two calls: an append landing between them goes with the table, but its item is one the
    batch reported failed or missing (not in the manifest), which the reconciliation re-runs."""
    now_staged = sum(w.rows for ws in clients.staging.writes(batch_id).values() for w in ws.values())
    if now_staged > staged_rows_total:
        log_event("staging_kept_late_rows", severity="WARNING", batch_id=batch_id,
                  rows_at_inventory=staged_rows_total, rows_now=now_staged,
                  message="rows were staged after the inventory; the reconciliation finishes them")
        return False
    clients.staging.drop(batch_id)  # 0 when a redelivery finds it gone
    return True


def record_result(clients: Clients, batch: dict, lease: str, merged: dict, inv: Inventory,
                  items: list[dict], manifest: dict[str, str], gap: int) -> str:
    """Record the consolidated batch under its lease and publish its summary; returns the outcome."""
    s, batch_id = clients.settings, batch["batch_id"]
    expected = int(batch["expected_items"])
    kept = kept_previous(clients, batch_id, dt.date.fromisoformat(batch["game_date"]), set(manifest))
    deleted = drop_staging(clients, batch_id, inv.staged_rows_total)
    merged_items = int(merged.get("verified_items", 0))
    missing = sorted(set(i["item_id"] for i in items) - set(manifest) - set(inv.failed_items))
    coverage = round(100.0 * merged_items / expected, 2) if expected else 0.0
    finished = merge_recovery.record_final(clients.batches, batch_id, lease, merged, {
        "status": CONSOLIDATED,
        "merged_items": merged_items,
        "merged_rows": int(merged.get("verified_rows", 0)),
        "failed_items": capped(inv.failed_items), "failed_items_count": len(inv.failed_items),
        "missing_items": capped(missing), "missing_items_count": len(missing),
        "recovered_items": capped(inv.recovered), "recovered_items_count": len(inv.recovered),
        "kept_previous_items": kept,
        "staging_gap": gap,  # expected items without a staged write at consolidation (F9 layer 4)
        "completed_without_write": capped(inv.missing_writes),
        "completed_without_write_count": len(inv.missing_writes),
        "abandoned_writes": inv.abandoned_writes,
        "staging_table_dropped": deleted,
        "coverage_pct": coverage,
        "consolidated_at": now(),
    })
    if finished == merge_recovery.UNRECORDABLE:
        return merge_recovery.UNRECORDABLE
    if not finished:
        log_event("consolidation_lease_lost", severity="ERROR", batch_id=batch_id, lease=lease,
                  message="the batch changed under this consolidation; its result was not written")
        return "lease_lost"
    log_event("consolidation_succeeded", batch_id=batch_id, merged_items=merged_items,
              merged_rows=merged.get("verified_rows", 0), coverage_pct=coverage,
              failed_items=len(inv.failed_items), missing_items=len(missing), staging_table_dropped=deleted,
              kept_previous_items=len(kept))
    if coverage < s.coverage_warning_pct:
        log_event("coverage_low", severity="ERROR" if coverage < s.coverage_critical_pct else "WARNING",
                  batch_id=batch_id, warning_pct=s.coverage_warning_pct, critical_pct=s.coverage_critical_pct,
                  coverage_pct=coverage, failed_items=inv.failed_items[:100], missing_items=missing[:100])
    publish_summary(clients, clients.batches.get_batch(batch_id) or {})
    return "consolidated"


def publish_summary(clients: Clients, batch: dict) -> None:
    """The consolidated batch's summary, from its recorded result; its message id is recorded, so a
    redelivery after a failed publish (the batch is already `done`) sends it, and only then."""
    summary = BatchSummary(batch_id=batch["batch_id"], game_date=batch["game_date"], status=CONSOLIDATED,
                           expected_items=int(batch["expected_items"]), merged_items=int(batch["merged_items"]),
                           failed_items=list(batch.get("failed_items") or []),
                           missing_items=list(batch.get("missing_items") or []),
                           merged_rows=int(batch.get("merged_rows") or 0), coverage_pct=float(batch["coverage_pct"]))
    message_id = clients.publish("summary", encode(summary), batch_id=batch["batch_id"])
    clients.batches.set_batch_fields(batch["batch_id"], {"summary_message_id": message_id})
