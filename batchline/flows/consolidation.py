"""The consolidation of a batch, in named phases: take the lease, take the inventory and fix the plan
(merge_plan.py), run ONE MERGE and record it durably before any deletion (merge_record.py), then record
the result (consolidation_result.py). Every write is conditional on still holding the lease, so nothing
written here can overwrite another writer's state; a redelivery resumes at the first unfinished phase."""

from __future__ import annotations

import datetime as dt
import time
import uuid

from batchline.adapters import merge as cons
from batchline.adapters.batch_store import BatchStore
from batchline.adapters.clients import Clients
from batchline.domain import faults as faults_mod
from batchline.domain.errors import ConsolidationError, MergeAttemptFailed, UnknownBatch
from batchline.domain.evidence import Inventory, take_inventory
from batchline.domain.messages import ConsolidationRequest, PushEnvelope, decode_data, parse_model
from batchline.domain.statuses import CONSOLIDATED, CONSOLIDATION_FAILED, PERMANENT, REOPENED, LeaseVerdict
from batchline.flows import merge_record as merge_recovery
from batchline.flows.consolidation_result import publish_summary, record_result
from batchline.flows.leases import LeaseKeeper
from batchline.flows.merge_plan import MergePlan, capped, plan_merge
from batchline.logs import log_event


def handle_consolidation(clients: Clients, envelope: PushEnvelope) -> str:
    """Each delivery gets a lease token of its own: two deliveries of one message (Pub/Sub's
    at-least-once) are two contenders, and only the lease holder runs the MERGE."""
    req = parse_model(ConsolidationRequest, decode_data(envelope))
    store = clients.batches
    if req.reason == "manual" and not _reopen_if_failed(store, req.batch_id, envelope.message.message_id):
        return "refused"
    token = uuid.uuid4().hex
    verdict, batch = store.take_lease(req.batch_id, token)
    if verdict != LeaseVerdict.RUN:
        log_event("consolidation_skipped", batch_id=req.batch_id, verdict=verdict, batch_status=batch["status"])
        if batch["status"] == CONSOLIDATED and not batch.get("summary_message_id"):
            publish_summary(clients, batch)  # the first delivery failed between its result and its summary
        return verdict
    finished = False
    try:
        with LeaseKeeper(store, req.batch_id, token) as keeper:
            outcome = consolidate_batch(clients, req.batch_id, batch, token, keeper)
        finished = True
        return outcome
    finally:
        if not finished:
            # Let the redelivery in at once instead of making it wait out the lease.
            store.release_lease(req.batch_id, token)


def _reopen_if_failed(store: BatchStore, batch_id: str, claimant: str) -> bool:
    """An operator's request re-opens a failed consolidation first; False when the re-open is refused
    (the reason is kept on the batch document)."""
    batch = store.get_batch(batch_id)
    if batch is None:
        raise UnknownBatch(f"no batch {batch_id}")
    if batch["status"] != CONSOLIDATION_FAILED:
        return True
    result, batch = store.reopen(batch_id, claimant, auto=False)
    if result != REOPENED:
        store.set_batch_fields(batch_id, {"reopen_refused": result[:2000]})
        log_event("consolidation_reopen_refused", severity="ERROR", batch_id=batch_id, reason=result)
        return False
    log_event("consolidation_reopened", batch_id=batch_id, by="operator",
              generation=batch.get("consolidation_generation"))
    return True


def consolidate_batch(clients: Clients, batch_id: str, batch: dict, lease: str,
                      keeper: LeaseKeeper | None = None) -> str:
    """Inventory, one MERGE, verification, cleanup, result; returns the outcome."""
    store = clients.batches
    items = store.items(batch_id)
    inv = take_inventory(clients.staging.writes(batch_id), items)
    plan = plan_merge(clients, store, batch, inv, items)
    gap = _log_inventory(batch, inv, items, plan)
    merged = batch.get("merge_result")
    if merged is None and plan.manifest:
        if (keeper is not None and keeper.lost) or not store.renew_lease(batch_id, lease):
            # checked right before the MERGE: a dead letter, a re-open or a newer holder may have moved the batch
            log_event("consolidation_lease_lost", severity="ERROR", batch_id=batch_id, lease=lease,
                      message="lost the batch before its MERGE; the delivery now holding it consolidates")
            return "lease_lost"
        merged = _merge_and_record(clients, batch, lease, inv, plan)
        if isinstance(merged, str):
            return merged
    return record_result(clients, batch, lease, merged or {}, inv, items, plan.manifest, gap)


def _log_inventory(batch: dict, inv: Inventory, items: list[dict], plan: MergePlan) -> int:
    """Log what is staged against what is expected; returns the gap (expected items without a write)."""
    batch_id, expected = batch["batch_id"], int(batch["expected_items"])
    log_event("staging_inventory", batch_id=batch_id, expected_items=expected, staged_items=len(plan.manifest),
              completed=len(inv.expected_completed), failed=len(inv.failed_items), pending=len(inv.pending_items),
              recovered=inv.recovered[:500], abandoned_writes=inv.abandoned_writes,
              unknown_items=inv.unknown_items[:100], unmergeable=inv.unmergeable[:100])
    gap = expected - len(plan.manifest)
    if gap:
        log_event("staging_gap", severity="WARNING", batch_id=batch_id, missing_staged_items=gap,
                  missing_items=sorted(set(i["item_id"] for i in items) - set(plan.manifest))[:500],
                  completed_without_write=inv.missing_writes)
    return gap


def _merge_and_record(clients: Clients, batch: dict, lease: str, inv: Inventory, plan: MergePlan) -> dict | str:
    """The one MERGE of the plan (or the recovery of the one that ran), verified and recorded durably
    before anything is deleted, so a redelivery skips straight to the result. Returns the recorded
    merge result, or an outcome when this delivery stops here."""
    s, store, batch_id = clients.settings, clients.batches, batch["batch_id"]
    game_date = dt.date.fromisoformat(batch["game_date"])
    injected = faults_mod.parse(batch.get("faults")) if s.allow_faults else faults_mod.FaultSpec()
    try:
        result = cons.merge_staging(
            clients.bq, s, batch_id, game_date, plan.pin, len(plan.manifest),
            merge_date=game_date + dt.timedelta(days=1) if injected.zero_merge else None,
            generation=plan.generation, attempt=plan.attempt,
            fail_transiently=plan.committed is None and plan.attempt < injected.merge_transient,
            pause_in_merge_s=injected.pause_in_merge)
    except MergeAttemptFailed as exc:
        moved = store.next_merge_attempt(batch_id, lease, plan.attempt)
        log_event("merge_attempt_failed", severity="ERROR", batch_id=batch_id, job_id=exc.job_id,
                  attempt=plan.attempt, next_attempt=plan.attempt + 1 if moved else None, error=str(exc))
        raise
    except ConsolidationError as exc:
        # A re-open runs a new MERGE after this one (merge_recovery never re-records a rejected job).
        store.merge_failed(batch_id, lease, str(exc), len(plan.manifest),
                           cons.merge_job_id(batch_id, plan.generation, plan.attempt))
        log_event("consolidation_failed", severity="ERROR", batch_id=batch_id, error=str(exc),
                  failure_kind=PERMANENT, staged_items_kept=len(plan.manifest))
        return "failed"
    except Exception as exc:
        if cons.is_dml_rate_limit(exc):
            log_event("dml_rate_limited", severity="ERROR", batch_id=batch_id, error=str(exc))
        raise  # redelivered
    merged = {**result.as_dict(), "staged_rows_total": inv.staged_rows_total,
              "recovered": capped(inv.recovered), "recovered_count": len(inv.recovered),
              "abandoned_writes": inv.abandoned_writes}
    recorded = merge_recovery.record_merge(store, batch_id, lease, merged, result.job_id, injected,
                                           (result.verified_rows, result.verified_items))
    if recorded == merge_recovery.LEASE_LOST:
        log_event("consolidation_lease_lost", severity="ERROR", batch_id=batch_id, job_id=result.job_id,
                  message="the MERGE is done; the delivery now holding the batch finds its job and records it")
    if recorded != merge_recovery.RECORDED:
        return recorded
    log_event("merge_verified", batch_id=batch_id, job_id=result.job_id, affected_rows=result.affected_rows,
              verified_rows=result.verified_rows, timings_s=result.timings_s)
    time.sleep(injected.pause_after_merge)  # the pause_after_merge fault: killed before cleanup
    return merged
