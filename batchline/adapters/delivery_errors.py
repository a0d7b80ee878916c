"""Why a work item's deliveries failed, kept where the operator's views and the dead-letter handler read it.

A delivery that fails answers non-2xx and Pub/Sub redelivers; after the last attempt the message is
dead-lettered. Without a record, "dead-lettered after 20 delivery attempts" was all `status`, `audit`
and `dlq list` could say, and the cause was only in the worker's logs. So each failed delivery writes,
to its own item's document (F3: a document only that item's deliveries write, never the batch's),

    last_error         {type, message, cause, attempt, at, write_id}: the exception's class and message,
                       the first line of what caused it (a client error's underlying RPC error, say),
                       and the write id of the attempt if it got that far (its rows may be staged)
    failed_deliveries  a count of failed deliveries (an increment in the same write)

one write per FAILED attempt, none on success. It never touches `updated_at` (a failure is not progress
for the stall check) and never changes the outcome: the delivery fails with its own error whether or
not the record could be written (a record that fails is logged as `delivery_error_not_recorded`).
The dead-letter handler copies `last_error` into the item's failure reason and its dead-letter record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

from google.cloud import firestore

from batchline.logs import log_event

LAST_ERROR = "last_error"
FAILED_DELIVERIES = "failed_deliveries"
MAX_MESSAGE = 500
MAX_CAUSE = 300
RECORD_TIMEOUT_S = 10.0  # the record must not hold the failing delivery past its ack deadline


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def describe(exc: BaseException, attempt: int | None, now: dt.datetime) -> dict:
    """The record of one failed delivery: class, message, first line of the cause (explicit or implicit)."""
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:MAX_MESSAGE],
        "cause": f"{type(cause).__name__}: {_first_line(str(cause))}"[:MAX_CAUSE] if cause is not None else None,
        "attempt": attempt or None,
        "at": now,
    }


def summary(error: dict | None) -> str | None:
    """One line for people: `Type: message (cause: ...)`, or None when nothing was recorded."""
    if not isinstance(error, dict) or not error.get("type"):
        return None
    text = f"{error['type']}: {_first_line(str(error.get('message') or ''))}"
    return text + (f" (cause: {error['cause']})" if error.get("cause") else "")


def dead_letter_reason(attempts: str | int, error: dict | None) -> str:
    """The failure reason of a dead-lettered item; names its last delivery's error when one was recorded."""
    reason = f"work message dead-lettered after {attempts} delivery attempts"
    last = summary(error)
    return f"{reason}; last error: {last}" if last else reason


def record_failed_delivery(item_ref, exc: BaseException, attempt: int | None, log_ctx: dict) -> bool:
    """Write the failed delivery's record on its item document; False (and an ERROR line) if that write
    failed. Never raises: the caller re-raises the delivery's own error either way."""
    error = {**describe(exc, attempt, dt.datetime.now(dt.UTC)), "write_id": log_ctx.get("write_id")}
    try:
        item_ref.update({LAST_ERROR: error, FAILED_DELIVERIES: firestore.Increment(1)}, timeout=RECORD_TIMEOUT_S)
    except Exception as rec_exc:  # noqa: BLE001 - logged; the delivery still fails with its own error
        log_event("delivery_error_not_recorded", severity="ERROR", error=str(rec_exc)[:500],
                  error_type=type(rec_exc).__name__, delivery_error=summary(error), **log_ctx)
        return False
    return True


@contextlib.contextmanager
def recorded_on_failure(item_ref, log_ctx: dict) -> Iterator[None]:
    """Run a delivery; if it raises, record why on its item (`log_ctx["attempt"]` numbers it) and let
    the same exception propagate unchanged."""
    try:
        yield
    except Exception as exc:
        record_failed_delivery(item_ref, exc, log_ctx.get("attempt"), log_ctx)
        raise
