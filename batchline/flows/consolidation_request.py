"""The consolidation request: claimed once in batch state, then published (docs/failures.md F3).

Verify first, claim second, publish third, record the message id fourth. While the batch is open,
its completion claims are verified in bulk (batchline/domain/claims.py: one query over the batch staging
table) before the claim; a rejected claim that sends its item back to pending stops the claim, and
the item's work is published again. A claimant that dies between the claim and the publish leaves a
claim without a message id; its own redelivery, anyone after lifecycle.CLAIM_GRACE, or the stall check
publishes it (lifecycle.decide_claim).
"""

from __future__ import annotations

import datetime as dt

from batchline.adapters.batch_store import BatchStore
from batchline.adapters.clients import Clients
from batchline.domain import claims
from batchline.domain.messages import ConsolidationRequest, WorkMessage, encode
from batchline.domain.statuses import COMPLETED, OPEN_STATUSES
from batchline.logs import log_event


def publish_claimed(clients: Clients, batch_id: str, reason: str) -> str:
    """Publish the consolidation request of a batch this caller has claimed, and record its id."""
    wire_reason = reason if reason in ("all_items_terminal", "stalled", "manual") else "stalled"
    message_id = clients.publish("consolidation", encode(ConsolidationRequest(batch_id=batch_id, reason=wire_reason)),
                                 batch_id=batch_id)
    clients.batches.set_batch_fields(batch_id, {"consolidation_message_id": message_id})
    log_event("consolidation_requested", batch_id=batch_id, reason=reason, message_id=message_id)
    return message_id


def request_consolidation_if_done(clients: Clients, batch_id: str, claimant: str,
                                  reason: str = "all_items_terminal", take_over: bool = False) -> bool:
    """When no item is pending any more and every completion claim is verified, make sure exactly one
    consolidation request goes out. `claimant` is stable across retries of the caller (its Pub/Sub
    message id)."""
    store = clients.batches
    if reason == "all_items_terminal" and store.any_pending(batch_id):
        return False
    if not take_over and not claims_verified(clients, store, batch_id):
        return False
    if not store.claim_consolidation(batch_id, reason, claimant, take_over=take_over):
        return False
    publish_claimed(clients, batch_id, reason)
    return True


def claims_verified(clients: Clients, store: BatchStore, batch_id: str) -> bool:
    """Verify every completion claim of an open batch with one query (claims.py); False when a rejected
    claim sent an item back to pending (its work is published again). A batch past its claim is not
    verified again: its consolidation's inventory decides what is merged."""
    batch = store.get_batch(batch_id)
    if batch is None or batch["status"] not in OPEN_STATUSES:
        return True
    items = store.items_with_status(batch_id, COMPLETED)
    staged = clients.staging.writes(batch_id)
    rejections = claims.judge(items, staged)
    log_event("claims_verified", batch_id=batch_id, claims=len(items), rejected=len(rejections),
              staged_items=len(staged))
    by_id = {i["item_id"]: i for i in items}
    redispatched = []
    for r in rejections:
        before = len(by_id[r.item_id].get("rejected_claims") or [])
        applied = store.reject_claim(
            batch, r.item_id, r.write_id, r.action, r.reason,
            switch_to=(r.switch_to.write_id, r.switch_to.rows) if r.switch_to else None,
            failure_reason=claims.failure_reason(r, before, batch_id))
        log_event("claim_rejected", severity="ERROR", batch_id=batch_id, item=r.item_id, write_id=r.write_id,
                  row_count=r.row_count, reason=r.reason, action=applied,
                  switched_to=r.switch_to.write_id if r.switch_to and applied == claims.SWITCH else None)
        if applied == claims.REDISPATCH:
            redispatched.append(by_id[r.item_id])
    for item in redispatched:  # durable as pending first: a publish lost here is the stall check's re-dispatch
        clients.publish("work", encode(WorkMessage(
            batch_id=batch_id, game_date=dt.date.fromisoformat(batch["game_date"]), item_id=item["item_id"],
            game_id=item["game_id"])), batch_id=batch_id, item_id=item["item_id"])
    return not redispatched
