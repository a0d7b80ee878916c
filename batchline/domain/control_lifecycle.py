"""Control requests' lifecycle: every decision that moves a `control_requests` record, as pure
functions of the record and the time (like batchline/domain/lifecycle.py for batches; the store,
batchline/adapters/control_records.py, reads, decides and writes in a transaction).

accepted  a delivery holds the request under a lease of its own size (CONTROL_LEASE), renewed every
          RENEW_EVERY while the action runs; a holder that died stops renewing, and the next delivery
          takes the request over once the lease lapsed (not after the subscription's 10-minute ack
          deadline: a start that died mid-dispatch is resumed within about a minute)
done      the action ran; `result` says what it did
refused   the action may not run (a conflict, stale inputs, an unknown batch): terminal, with the reason
failed    the request was dead-lettered with nobody holding it; a replay runs it again

A redelivery that finds a live holder waits for it (up to HOLDER_WAIT) instead of answering 5xx at
once: every 5xx costs a delivery attempt, and the attempts would run out while the lease lives.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from batchline.domain.lifecycle import Decision


class RequestStatus(StrEnum):
    """A control request record's `status` (see above)."""

    ACCEPTED = "accepted"
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"


class ClaimResult(StrEnum):
    """What decide_claim tells a delivery of a request (see decide_claim)."""

    RUN = "run"
    RETRY = "retry"
    RECORDED = "recorded"
    REUSED = "reused"
    BUSY = "busy"


class HolderResult(StrEnum):
    """What the holder's renew / note / finish / release did; LOST: another delivery took the request over."""

    LOST = "lost"
    RENEWED = "renewed"
    NOTED = "noted"
    FINISHED = "finished"
    RELEASED = "released"


class DeadLetterResult(StrEnum):
    """What decide_dead_letter did: the request recorded as failed, or ignored (see decide_dead_letter)."""

    RECORDED = "recorded"
    IGNORED = "ignored"


ACCEPTED, DONE, REFUSED, FAILED = (RequestStatus.ACCEPTED, RequestStatus.DONE, RequestStatus.REFUSED,
                                   RequestStatus.FAILED)
FINAL = (DONE, REFUSED)
CONTROL_LEASE = dt.timedelta(seconds=30)
RENEW_EVERY = CONTROL_LEASE / 4
HOLDER_WAIT = CONTROL_LEASE + dt.timedelta(seconds=15)  # outwaits a dead holder's lease, not a live one


def _held(doc: dict, now: dt.datetime) -> bool:
    """Someone holds the request: accepted, with a lease that has not lapsed."""
    return doc.get("status") == ACCEPTED and bool(doc.get("lease_until")) and doc["lease_until"] > now


def decide_claim(doc: dict | None, body: dict, action: str, request_id: str, token: str,
                 now: dt.datetime) -> Decision[ClaimResult]:
    """('run', record to create) the first time; ('retry', update) when a failed, released or lapsed
    attempt is taken over (the previous holder's token stays as `previous_token`, so the new holder
    knows whose dispatch it may take over); ('recorded', None) when the request has its answer;
    ('reused', None) when the id names a different request; ('busy', None) while a live holder runs it."""
    lease = {"token": token, "lease_until": now + CONTROL_LEASE, "updated_at": now}
    if doc is None:
        return ClaimResult.RUN, {"request_id": request_id, "action": action, "request": body, "status": ACCEPTED,
                       "attempts": 1, "accepted_at": now, "result": None, "error": None, "batch_id": None, **lease}
    if doc.get("request") != body:
        return ClaimResult.REUSED, None
    if doc["status"] in FINAL:
        return ClaimResult.RECORDED, None
    if _held(doc, now) and doc.get("token") != token:
        return ClaimResult.BUSY, None
    return ClaimResult.RETRY, {"status": ACCEPTED, "attempts": int(doc.get("attempts") or 0) + 1,
                     "previous_token": doc.get("token"), **lease}


def decide_renew(doc: dict, token: str, now: dt.datetime) -> Decision[HolderResult]:
    """Extend the lease for its holder only; 'lost' tells a holder another delivery took over."""
    if doc.get("status") != ACCEPTED or doc.get("token") != token:
        return HolderResult.LOST, None
    return HolderResult.RENEWED, {"lease_until": now + CONTROL_LEASE, "updated_at": now}


def decide_note(doc: dict, token: str, fields: dict, now: dt.datetime) -> Decision[HolderResult]:
    """What the holder learned on the way (the batch it registered): recorded at once, so a takeover
    and the operator both see it even if the holder dies before it answers."""
    if doc.get("status") != ACCEPTED or doc.get("token") != token:
        return HolderResult.LOST, None
    return HolderResult.NOTED, {**fields, "updated_at": now}


def decide_finish(doc: dict, token: str, status: str, result: dict, now: dt.datetime) -> Decision[HolderResult]:
    """The holder's answer. A holder that lost the request (it was too slow to renew and another
    delivery took over) writes nothing: the new holder answers."""
    if doc.get("status") != ACCEPTED or doc.get("token") != token:
        return HolderResult.LOST, None
    return HolderResult.FINISHED, {"status": status, "result": result, "error": result.get("error"),
                                   "lease_until": None, "batch_id": result.get("batch_id") or doc.get("batch_id"),
                                   "finished_at": now, "updated_at": now}


def decide_release(doc: dict, token: str, error: str, now: dt.datetime) -> Decision[HolderResult]:
    """A holder that failed transiently lets the next delivery in at once, leaving its error."""
    if doc.get("status") != ACCEPTED or doc.get("token") != token:
        return HolderResult.LOST, None
    return HolderResult.RELEASED, {"lease_until": now, "error": error[:2000], "updated_at": now}


def decide_dead_letter(doc: dict | None, body: dict, action: str, request_id: str, error: str,
                       now: dt.datetime) -> Decision[DeadLetterResult]:
    """The request exhausted its deliveries: 'recorded' as failed (naming the batch an attempt
    registered, if any), or 'ignored' when it has its answer, names another request, or a live holder
    is still running it (that holder answers)."""
    if doc is not None and (doc["status"] in FINAL or doc.get("request") != body or _held(doc, now)):
        return DeadLetterResult.IGNORED, None
    last = (doc or {}).get("error")
    error = f"{error}; the last attempt's error: {last}" if last else error
    fields = {"status": FAILED, "error": error[:2000], "lease_until": None, "finished_at": now, "updated_at": now}
    if doc is None:
        return DeadLetterResult.RECORDED, {"request_id": request_id, "action": action, "request": body, "attempts": 0,
                            "accepted_at": now, "result": None, "batch_id": None, **fields}
    batch_id = doc.get("batch_id")
    return DeadLetterResult.RECORDED, {**fields, "result": {"batch_id": batch_id} if batch_id else doc.get("result")}
