"""What `batchline status` and `batchline audit` report, computed from the systems of record:
batch state in Firestore, rows in the main table. Plain dicts (the `--json` shapes)."""

from __future__ import annotations

import datetime as dt

from batchline.adapters.batch_store import BatchStore
from batchline.adapters.clients import Clients
from batchline.adapters.delivery_errors import FAILED_DELIVERIES, LAST_ERROR
from batchline.domain import accounting
from batchline.domain import lifecycle as lc
from batchline.domain.audit import STATES
from batchline.domain.runs import repair_blocked
from batchline.domain.statuses import (
    ACTIVE_STATUSES,
    COMPLETED,
    CONSOLIDATED,
    CONSOLIDATION_FAILED,
    DISPATCH_FAILED,
    FAILED,
    MERGED_UNRECORDED,
    PENDING,
    SUPERSEDED,
    TRANSIENT,
)
from batchline.flows import batch_facts

PHASES = (("dispatch", "created_at", "dispatched_at"),
          ("work", "dispatched_at", "consolidation_requested_at"),
          ("consolidation", "consolidation_requested_at", "consolidated_at"),
          ("total", "created_at", "consolidated_at"))


def _iso(v) -> str | None:
    return v.isoformat() if isinstance(v, dt.datetime) else v


def next_steps(batch: dict, counts: dict[str, int], dead_lettered: list[dict], newest: str | None = None,
               newest_status: str | None = None) -> list[str]:
    """What an operator should do next, each step one the code then accepts; empty when nothing is
    needed. `newest` is the date's newest run (a failed batch is re-consolidated only while it is the
    newest, and no repair starts while the newest failed consolidation: repair_blocked)."""
    b, status, day = batch["batch_id"], batch["status"], batch["game_date"]
    blocked = repair_blocked(newest, newest_status, day)
    after = ("after it consolidates, " if newest == b else
             f"after batch {newest} (the date's newest run) is re-consolidated, ") if blocked else ""
    steps: list[str] = []
    if status in ACTIVE_STATUSES:
        steps.append(f"in progress ({status}); watch with `batchline status {b}`. The stall check moves a "
                     f"batch without progress on after its stall period")
    elif status == CONSOLIDATION_FAILED and batch.get("failure_kind") == MERGED_UNRECORDED:
        steps.append(f"the MERGE {batch.get('merged_job_id')} committed: the rows ARE in the main table, only its "
                     f"record is missing ({batch.get('error')}). Do not re-run the date; fix the cause, then "
                     f"`batchline consolidate {b}` records that job without a second MERGE")
    elif status == CONSOLIDATION_FAILED and newest not in (None, b):
        steps.append(f"consolidation failed ({batch.get('error')}); a newer run ({newest}) replaced this batch, so "
                     f"it is not re-consolidated: the daily reconciliation finishes its kept rows per item (now: "
                     f"`batchline reconcile {day}`)")
    elif status == CONSOLIDATION_FAILED:
        how = ("the stall check re-opens a transient failure by itself, at most "
               f"{lc.MAX_AUTO_REOPENS} times; or " if batch.get("failure_kind") == TRANSIENT else "")
        steps.append(f"consolidation failed ({batch.get('error')}); the staging table is kept: {how}fix the cause, "
                     f"then `batchline consolidate {b} --wait`")
    elif status == DISPATCH_FAILED:
        steps.append(f"dispatch failed ({batch.get('error')}): `batchline start {day}` again")
    elif status == SUPERSEDED:
        steps.append(f"superseded by {batch.get('superseded_by')}: see `batchline status {batch.get('superseded_by')}`")
    unreplayed = [i["item_id"] for i in dead_lettered if not i.get("replayed_in")]
    if unreplayed and status not in ACTIVE_STATUSES:
        steps.append(f"{len(unreplayed)} dead-lettered items: {after}fix their cause, then "
                     f"`batchline dlq replay --batch {b}`")
    if status == CONSOLIDATED and batch.get("staging_table_dropped") is False:
        steps.append(f"its staging table is kept: {accounting.kept_table_reason(batch)} "
                     f"(or now: `batchline reconcile {day}`)")
    if batch.get("missing_items") and status == CONSOLIDATED:
        steps.append(f"{len(batch['missing_items'])} items missing: {after}`batchline reconcile {day} --repair`")
    return steps


def status(clients: Clients, batch_id: str) -> dict:
    store = BatchStore(clients.fs)
    batch = store.get_batch(batch_id)
    if batch is None:
        raise LookupError(f"no batch {batch_id}")
    counts = {s: store.count_items(batch_id, s) for s in (PENDING, COMPLETED, FAILED)}
    failed = store.items_with_status(batch_id, FAILED)
    dead = [i for i in failed if i.get("dead_lettered_at")]
    timings = {name: round((batch[b] - batch[a]).total_seconds(), 1)
               for name, a, b in PHASES if batch.get(a) and batch.get(b)}
    merge = batch.get("merge_result") or {}
    newest = store.active_batch_of(dt.date.fromisoformat(batch["game_date"]))
    newest_status = batch["status"] if newest == batch_id else (store.get_batch(newest) or {}).get("status") \
        if newest else None
    steps = next_steps(batch, counts, dead, newest, newest_status)
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
        # the one definition the ledger and the audit use too (accounting.kept_table_reason)
        "staging_kept_reason": (None if batch.get("staging_table_dropped") is True
                                else accounting.kept_table_reason(batch)),
        "next_steps": steps,
        "needs_attention": (batch["status"] in (CONSOLIDATION_FAILED, DISPATCH_FAILED)
                            or any(not i.get("replayed_in") for i in dead)
                            or bool(batch.get("missing_items"))),
    }


def audit(clients: Clients, batch_id: str) -> dict:
    """Every item the batch expected, in exactly one of audit.STATES: the same facts and the same
    judgement as the loss ledger (batchline/domain/accounting.py), item by item."""
    facts = batch_facts.gather(clients, batch_id)
    j = accounting.judge(facts)
    batch = facts.batch
    detail = []
    for state in STATES:
        for item_id in j.parts[state]:
            i = facts.items.get(item_id) or {}
            own = facts.own_rows.get(item_id)
            entry = {"item_id": item_id, "state": state, "rows": own.rows if own else 0, "item_status": i.get("status")}
            if item_id in j.overwritten:
                entry.update(rows=sum(facts.other_batches[item_id].values()), overwritten_by=j.overwritten[item_id])
            if state != "merged":
                reason = j.incomplete.get(item_id) or i.get("failure_reason") or (
                    None if i else "the batch has no item for this scheduled player")
                entry.update(reason=reason, attempts=i.get("attempts"), last_error=i.get(LAST_ERROR),
                             failed_deliveries=i.get(FAILED_DELIVERIES), replayed_in=i.get("replayed_in"),
                             active_rows_from=facts.active_from.get(item_id, []))
            detail.append(entry)
    counts = {state: len(j.parts[state]) for state in STATES}
    return {
        "batch_id": batch_id, "game_date": batch["game_date"], "batch_status": batch["status"],
        "expected_items": len(j.expected), "counts": counts, "sum": sum(counts.values()),
        "merged_rows": sum(r.rows for r in facts.own_rows.values()), "overwritten_by_later_runs": len(j.overwritten),
        "unexpected_merged_items": sorted(set(facts.own_rows) - set(j.expected)),
        "duplicate_rows": facts.duplicate_ids, "duplicate_active_rows": facts.duplicate_active,
        "staging_table": {"exists": facts.staging_table_exists, "kept_reason": j.kept_table_reason},
        "main_table_merge_jobs": facts.merge_jobs,
        "items": detail, "problems": j.problems, "ok": not j.problems,
    }
