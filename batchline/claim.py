"""The consolidation request: claimed once in batch state, then published (docs/failures.md F3).

Claim first, publish second, record the message id third. A claimant that dies between the claim
and the publish leaves a claim without a message id; its own redelivery, anyone after
lifecycle.CLAIM_GRACE, or the stall check publishes it (lifecycle.decide_claim).
"""

from __future__ import annotations

from batchline.clients import Clients
from batchline.logs import log_event
from batchline.messages import ConsolidationRequest, encode
from batchline.state import BatchStore


def publish_claimed(clients: Clients, batch_id: str, reason: str) -> str:
    """Publish the consolidation request of a batch this caller has claimed, and record its id."""
    wire_reason = reason if reason in ("all_items_terminal", "stalled", "manual") else "stalled"
    message_id = clients.publish("consolidation", encode(ConsolidationRequest(batch_id=batch_id, reason=wire_reason)),
                                 batch_id=batch_id)
    BatchStore(clients.fs).set_batch_fields(batch_id, {"consolidation_message_id": message_id})
    log_event("consolidation_requested", batch_id=batch_id, reason=reason, message_id=message_id)
    return message_id


def request_consolidation_if_done(clients: Clients, batch_id: str, claimant: str,
                                  reason: str = "all_items_terminal", take_over: bool = False) -> bool:
    """When no item is pending any more, make sure exactly one consolidation request goes out.
    `claimant` is stable across retries of the caller (its Pub/Sub message id)."""
    store = BatchStore(clients.fs)
    if reason == "all_items_terminal" and store.any_pending(batch_id):
        return False
    if not store.claim_consolidation(batch_id, reason, claimant, take_over=take_over):
        return False
    publish_claimed(clients, batch_id, reason)
    return True
