"""The stall check (docs/failures.md F4): find batches that stopped moving and move them on.

Scheduled (and safe to call at any time, any number of times). Each batch is checked on its own; one
that fails to be checked does not keep the others from being checked, and the failure is answered 5xx.

- dispatching with a lapsed dispatch lease: the start died mid-dispatch; resume it (lifecycle.DISPATCH_LEASE);
- consolidation claimed but not published for lifecycle.CLAIM_GRACE: publish it;
- consolidating with a lapsed lease (the holder died mid-consolidation): publish a new request, whose
  delivery takes the lease over;
- consolidation failed for a transient reason: re-open it under a new MERGE generation, at most
  lifecycle.MAX_AUTO_REOPENS times, and only while it is its date's newest run;
- running, no progress for `stall_minutes`: re-dispatch the pending items once; still stalled a
  whole period later: mark them failed ("stalled") and consolidate what exists, unless completion is
  below `min_completion_pct` (then it stays open and alerts every run).
"""

from __future__ import annotations

import datetime as dt

from batchline.adapters.batch_store import now
from batchline.adapters.clients import Clients
from batchline.domain import lifecycle as lc
from batchline.domain.errors import StallCheckErrors
from batchline.domain.messages import StallCheckRequest, WorkMessage, encode
from batchline.domain.statuses import (
    CONSOLIDATING,
    CONSOLIDATION_FAILED,
    CONSOLIDATION_REQUESTED,
    DISPATCHING,
    PENDING,
    REOPENED,
    RUNNING,
    TRANSIENT,
)
from batchline.flows.consolidation_request import publish_claimed, request_consolidation_if_done
from batchline.flows.dispatch import resume_dispatch
from batchline.logs import log_event


def stall_check(clients: Clients, req: StallCheckRequest) -> list[dict]:
    s = clients.settings
    stall = dt.timedelta(minutes=req.stall_minutes or s.stall_minutes)
    min_pct = req.min_completion_pct if req.min_completion_pct is not None else s.min_completion_pct
    store = clients.batches
    reports: list[dict] = []
    errors: list[str] = []
    checks = [(b, _check_unpublished_claim) for b in store.batches_with_status([CONSOLIDATION_REQUESTED])]
    checks += [(b, _check_consolidating) for b in store.batches_with_status([CONSOLIDATING])]
    checks += [(b, _check_failed_consolidation) for b in store.batches_with_status([CONSOLIDATION_FAILED])]
    checks += [(b, _check_dispatching) for b in store.batches_with_status([DISPATCHING])]
    checks += [(b, _check_running) for b in store.batches_with_status([RUNNING])]
    for batch, check in checks:
        try:
            report = check(clients, store, batch, stall, min_pct, req.redispatch)
        except Exception as exc:  # noqa: BLE001 - logged, counted, and re-raised below as a 5xx
            errors.append(f"{batch['batch_id']}: {type(exc).__name__}: {exc}")
            log_event("stall_check_failed", severity="ERROR", batch_id=batch["batch_id"], error=str(exc))
            continue
        if report:
            log_event("batch_stalled", severity="WARNING", **report)
            reports.append(report)
    if errors:
        raise StallCheckErrors(f"{len(errors)} batches could not be checked: {'; '.join(errors)[:2000]}")
    return reports


def _check_unpublished_claim(clients, store, batch, stall, min_pct, redispatch) -> dict | None:
    requested = batch.get("consolidation_requested_at")
    if batch.get("consolidation_message_id") or (requested and now() - requested < lc.CLAIM_GRACE):
        return None
    if request_consolidation_if_done(clients, batch["batch_id"], "stall-check", reason="stalled", take_over=True):
        return {"batch_id": batch["batch_id"], "action": "consolidation_republished"}
    return None


def _check_consolidating(clients, store, batch, stall, min_pct, redispatch) -> dict | None:
    expires = batch.get("lease_expires_at")
    if expires is not None and expires > now():
        return None
    # Nobody holds the batch: its holder died, or released it to a redelivery that never came.
    publish_claimed(clients, batch["batch_id"], "stalled")
    return {"batch_id": batch["batch_id"], "action": "consolidation_lease_expired_republished"}


def _check_failed_consolidation(clients, store, batch, stall, min_pct, redispatch) -> dict | None:
    if batch.get("failure_kind") != TRANSIENT or int(batch.get("auto_reopens") or 0) >= lc.MAX_AUTO_REOPENS:
        return None
    result, _ = store.reopen(batch["batch_id"], "stall-check", auto=True)
    if result != REOPENED:
        log_event("consolidation_reopen_refused", severity="WARNING", batch_id=batch["batch_id"], reason=result)
        return None
    publish_claimed(clients, batch["batch_id"], "stalled")
    return {"batch_id": batch["batch_id"], "action": "consolidation_reopened",
            "previous_error": str(batch.get("error"))[:500]}


def _check_dispatching(clients, store, batch, stall, min_pct, redispatch) -> dict | None:
    lease = batch.get("dispatch_lease_until")
    if lease is not None and lease > now():
        return None
    result = resume_dispatch(clients, batch["batch_id"], by="stall-check")
    if result is None:
        return {"batch_id": batch["batch_id"], "action": "dispatch_not_resumable"}
    return {"batch_id": batch["batch_id"], "action": "dispatch_resumed"}


def _check_running(clients, store, batch, stall, min_pct, redispatch) -> dict | None:
    batch_id = batch["batch_id"]
    items = store.items(batch_id)
    pending = [i for i in items if i["status"] == PENDING]
    if not pending:
        request_consolidation_if_done(clients, batch_id, "stall-check")
        return None
    last_progress = max(i["updated_at"] for i in items)
    if now() - last_progress < stall:
        return None
    done_pct = round(100.0 * (len(items) - len(pending)) / len(items), 2)
    pending_ids = sorted(i["item_id"] for i in pending)
    report = {"batch_id": batch_id, "completion_pct": done_pct, "pending_items": pending_ids}
    never_redispatched = [i for i in pending if not i.get("redispatched_at")]
    if redispatch and never_redispatched:
        for i in never_redispatched:
            clients.publish("work", encode(WorkMessage(batch_id=batch_id, game_date=batch["game_date"],
                                                       item_id=i["item_id"], game_id=i["game_id"])),
                            batch_id=batch_id, item_id=i["item_id"])
        store.mark_redispatched(batch_id, [i["item_id"] for i in never_redispatched])
        report["action"] = "redispatched"
    elif done_pct >= min_pct:
        for item_id in pending_ids:
            store.record_failure(batch_id, item_id, f"stalled: no progress for {stall}")
        request_consolidation_if_done(clients, batch_id, "stall-check", reason="stalled")
        report["action"] = "consolidating_partial"
    else:
        report["action"] = "below_min_completion"
    return report
