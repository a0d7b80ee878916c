"""A message that exhausted its delivery attempts becomes a terminal state an operator sees: a failed
item, a recorded completion, a failed consolidation or control request, or a rejected message. The
dead-letter pull subscription keeps its own copy for replay whatever happens here."""

from __future__ import annotations

from batchline.adapters import delivery_errors
from batchline.adapters.clients import Clients
from batchline.domain import control_requests as ctl
from batchline.domain.errors import InvalidMessage, UnknownItem
from batchline.domain.messages import (
    CompletionMessage,
    ConsolidationRequest,
    PushEnvelope,
    WorkMessage,
    decode_data,
    parse_model,
)
from batchline.domain.statuses import TRANSIENT
from batchline.domain.work_check import check_work_message
from batchline.flows import control as control_actions
from batchline.flows.completion import record_completion
from batchline.flows.consolidation_request import request_consolidation_if_done
from batchline.logs import log_event
from batchline.topology import TOPOLOGY

DEAD_LETTER_SOURCES = TOPOLOGY.dead_letter_sources()  # work, completions, consolidation, control


def handle_dead_letter(clients: Clients, source: str, envelope: PushEnvelope) -> str:
    """Returns what became of the message; a message that names nothing known is 'rejected' (kept in
    the rejected messages, batchline/adapters/batch_store/rejected.py)."""
    if source not in DEAD_LETTER_SOURCES:
        raise InvalidMessage(f"unknown dead-letter source {source!r}")
    attempts = envelope.message.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount", "?")
    try:
        payload = decode_data(envelope)
        if source == "work":
            return _work_dead_lettered(clients, envelope, parse_model(WorkMessage, payload), attempts)
        if source == "completions":
            # The staged write is durable; recording the completion here keeps its rows.
            msg = parse_model(CompletionMessage, payload)
            log_event("completion_dead_lettered", severity="ERROR", batch_id=msg.batch_id, item=msg.item_id,
                      delivery_attempts=attempts)
            return record_completion(clients, msg, envelope.message.message_id)
        if source == "control":
            return control_actions.handle_control_dead_letter(clients, ctl.parse_control(payload), attempts)
        return _consolidation_dead_lettered(clients, parse_model(ConsolidationRequest, payload), attempts)
    except (InvalidMessage, UnknownItem) as exc:
        clients.batches.record_rejected(envelope.message.message_id, envelope.subscription,
                                        envelope.message.data.encode(), str(exc), source=source)
        log_event("message_rejected", severity="ERROR", source=source,
                  message_id=envelope.message.message_id, error=str(exc))
        return "rejected"


def _work_dead_lettered(clients: Clients, envelope: PushEnvelope, msg: WorkMessage, attempts: str) -> str:
    """The item fails with the last delivery's error (delivery_errors.py), kept for replay."""
    store = clients.batches
    batch, item = store.get_batch_and_item(msg.batch_id, msg.item_id)
    last_error = check_work_message(batch, item, msg, "dead-lettered work message").get(delivery_errors.LAST_ERROR)
    clients.dead_letter_log.record(msg.batch_id, msg.item_id, envelope.message.message_id, attempts,
                                     envelope=envelope, payload=msg.model_dump(mode="json"), last_error=last_error)
    result, may_be_done = store.record_failure_counted(
        msg.batch_id, msg.item_id, delivery_errors.dead_letter_reason(attempts, last_error), dead_lettered=True)
    log_event("item_dead_lettered", severity="ERROR", batch_id=msg.batch_id, item=msg.item_id,
              result=result, delivery_attempts=attempts, last_error=delivery_errors.summary(last_error))
    if may_be_done:
        request_consolidation_if_done(clients, msg.batch_id, envelope.message.message_id)
    return result


def _consolidation_dead_lettered(clients: Clients, req: ConsolidationRequest, attempts: str) -> str:
    """Only a consolidation nobody is running can fail this way (lifecycle.decide_consolidation_dead_letter):
    a late dead letter for a batch consolidated, re-opened or held by a live delivery changes nothing. A
    consolidation that failed permanently answered 2xx; one that dead-letters failed transiently every time."""
    failed = clients.batches.consolidation_dead_lettered(
        req.batch_id, f"consolidation dead-lettered after {attempts} attempts")
    log_event("consolidation_failed" if failed else "consolidation_dead_letter_ignored",
              severity="ERROR" if failed else "WARNING", batch_id=req.batch_id, reason="dead-lettered",
              failure_kind=TRANSIENT, delivery_attempts=attempts)
    return "recorded" if failed else "ignored"
