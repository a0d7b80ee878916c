"""A completion: a worker's claim that an item's rows are staged. Recorded from batch state alone (its
write is verified in bulk with the batch's other claims before the consolidation is claimed,
batchline/flows/consolidation_request.py); idempotent, and durable before the handler answers."""

from __future__ import annotations

from enum import StrEnum

from batchline.adapters.batch_store import BatchStore, ItemSnapshot
from batchline.adapters.clients import Clients
from batchline.domain import ids, item_shape
from batchline.domain import lifecycle as lc
from batchline.domain.errors import InvalidMessage, UnknownItem
from batchline.domain.messages import CompletionMessage, PushEnvelope, decode_data, parse_model
from batchline.domain.statuses import COMPLETED, OPEN_STATUSES, CompletionResult
from batchline.flows.consolidation_request import request_consolidation_if_done
from batchline.logs import log_event


class CompletionKind(StrEnum):
    """What a completion is, judged from batch state before anything is written."""

    CLAIM = "claim"  # news: recorded, counted on its progress shard
    DUPLICATE = "duplicate"  # a redelivery of the recorded claim
    SECOND_WRITE = "second_write"  # the item already claims another write: never recorded, never merged
    LATE = "late"  # its batch moved past consolidation
    SHORT = "short"  # it claims fewer rows than the item's complete work (item_shape.py)


def handle_completion(clients: Clients, envelope: PushEnvelope) -> str:
    return record_completion(clients, parse_model(CompletionMessage, decode_data(envelope)),
                             envelope.message.message_id)


def judge_completion(store: BatchStore, msg: CompletionMessage) -> tuple[CompletionKind, dict, ItemSnapshot]:
    """Raises InvalidMessage when the completion cannot be true whatever is staged (another table than
    its batch's), UnknownItem for an unknown item."""
    if msg.staging_table != ids.batch_staging_table(msg.batch_id):
        raise InvalidMessage(f"staging table {msg.staging_table} is not the staging table of batch {msg.batch_id}")
    batch, item = store.batch_and_item_snapshots(msg.batch_id, msg.item_id)
    if batch is None or item is None:
        raise UnknownItem(f"batch {msg.batch_id} has no item {msg.item_id}")
    if lc.completion_is_recorded(item.data, msg.write_id, msg.row_count):
        return CompletionKind.DUPLICATE, batch, item
    if item.data["status"] == COMPLETED:
        return CompletionKind.SECOND_WRITE, batch, item
    if batch["status"] not in OPEN_STATUSES:
        return CompletionKind.LATE, batch, item
    if msg.row_count != item_shape.EXPECTED_ROWS:
        return CompletionKind.SHORT, batch, item
    return CompletionKind.CLAIM, batch, item


def record_completion(clients: Clients, msg: CompletionMessage, claimant: str) -> str:
    """Returns 'recorded', 'duplicate', 'second_write', 'late' or 'incomplete'."""
    store = clients.batches
    kind, batch, item = judge_completion(store, msg)
    ctx = {"batch_id": msg.batch_id, "item": msg.item_id, "write_id": msg.write_id, "row_count": msg.row_count}
    if kind == CompletionKind.SHORT:
        return record_incomplete(clients, msg, claimant, f"write {msg.write_id} of {msg.item_id} claims "
                                 f"{msg.row_count} rows; the item's work is {item_shape.EXPECTED_ROWS}")
    if kind == CompletionKind.LATE:
        # Merged already (recovered from its staged write before this completion came) or not: then the
        # batch reported the item failed or missing, and the daily reconciliation finishes or re-runs it.
        why = "completion arrived after its batch moved past consolidation; its write is not part of the MERGE"
        if item.data["status"] == COMPLETED:
            log_event("completion_after_merge", batch_status=batch["status"], message=why, **ctx)
        else:
            log_event("late_completion", severity="ERROR", batch_status=batch["status"], message=why, **ctx)
        return "late"
    if kind == CompletionKind.SECOND_WRITE:
        log_event("completion_second_write", severity="WARNING", recorded_write_id=item.data.get("write_id"),
                  message="the item already claims another write; this completion is not recorded and its "
                  "write is never merged (a redelivered attempt's, or a forgery)", **ctx)
        result, may_be_done = "second_write", store.may_be_done(batch, msg.item_id)
    elif kind == CompletionKind.DUPLICATE:
        # A redelivery: its first delivery may have died between the record and the request below.
        log_event("completion_duplicate", **ctx)
        result, may_be_done = CompletionResult.DUPLICATE, store.may_be_done(batch, msg.item_id)
    else:
        result, may_be_done = store.record_completion_counted(
            msg.batch_id, msg.item_id, msg.staging_table, msg.row_count, msg.attempt, msg.write_id, batch, item)
        log_event("item_completed" if result == CompletionResult.RECORDED else "completion_duplicate", **ctx)
    # The exact pending query, and the claims' verification, run only when the batch may be done.
    if may_be_done:
        request_consolidation_if_done(clients, msg.batch_id, claimant)
    return result


def record_incomplete(clients: Clients, msg: CompletionMessage, claimant: str, reason: str) -> str:
    """An incomplete write fails its item, with the reason, where the operator sees it (status, audit),
    instead of leaving it pending until the stall check: a later complete write's completion still
    overrides the failure (lifecycle.decide_completion), and a completed item stays completed."""
    result, may_be_done = clients.batches.record_failure_counted(
        msg.batch_id, msg.item_id, f"{item_shape.INCOMPLETE_WRITE}: {reason}")
    log_event("completion_incomplete", severity="ERROR", batch_id=msg.batch_id, item=msg.item_id,
              write_id=msg.write_id, row_count=msg.row_count, result=result, error=reason)
    if may_be_done:
        request_consolidation_if_done(clients, msg.batch_id, claimant)
    return "incomplete"
