"""Batch and item lifecycle: the statuses and every decision that moves them, as pure functions.

Each `decide_*` takes the current document (a dict, as Firestore returns it) and the time, and
returns (result, update): the update is the fields to write, or None to write nothing. The store
(`batchline.adapters.batch_store`) reads, decides and writes conditionally; nothing here does I/O, so every guard is
testable in microseconds (tests/unit/test_lifecycle.py).

Guards that hold a batch together (docs/failures.md F2, F3, F4, F6):
- the consolidation is claimed once; a claim nobody published is taken over after CLAIM_GRACE;
- one delivery at a time holds the consolidation lease, by a token unique to that delivery, renewed
  while it works and released when it stops; an expired lease is taken over;
- a MERGE attempt is replaced by a new one only once it is known to have failed;
- a failed consolidation is re-opened only while its batch is still the date's newest run;
- the dispatch of a start holds a lease too, so a start that died mid-dispatch is resumed, not waited out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TypeVar

from batchline.domain.statuses import (
    COMPLETED,
    CONSOLIDATING,
    CONSOLIDATION_FAILED,
    CONSOLIDATION_REQUESTED,
    DISPATCH_FAILED,
    DISPATCHING,
    FAILED,
    OPEN_STATUSES,
    PENDING,
    REOPENED,
    RUNNING,
    TERMINAL_STATUSES,
    TRANSIENT,
    ClaimVerdict,
    CompletionResult,
    FailureResult,
    LeaseVerdict,
)

MAX_AUTO_REOPENS = 3

# A holder renews its lease every LEASE_TTL / 4; a lease not renewed for LEASE_TTL is dead.
LEASE_TTL = dt.timedelta(seconds=60)
# A consolidation claimed but not published after this long: its claimant died; anyone may publish.
CLAIM_GRACE = dt.timedelta(seconds=60)
# A start renews this while it publishes; a dispatch silent for this long is resumed by the next caller.
DISPATCH_LEASE = dt.timedelta(seconds=60)

R = TypeVar("R")
#: (result, the fields to write or None): what every decide_* returns, typed by its result.
Decision = tuple[R, dict | None]


def lease_expired(deadline: dt.datetime | None, now: dt.datetime) -> bool:
    return deadline is None or deadline <= now


# -- the consolidation claim ------------------------------------------------------------------
def decide_claim(batch: dict, reason: str, claimant: str, now: dt.datetime, *,
                 take_over: bool = False) -> Decision[bool]:
    """True when this caller may publish the consolidation request. A claim whose claimant never
    published (it died between the two writes) may be republished by that claimant's redelivery at
    once, by anyone once CLAIM_GRACE has passed, and by the stall check (`take_over`) at any time."""
    claim = {"status": CONSOLIDATION_REQUESTED, "consolidation_reason": reason,
             "consolidation_claimant": claimant, "consolidation_requested_at": now}
    if batch["status"] in OPEN_STATUSES:
        return True, claim
    unpublished = batch["status"] == CONSOLIDATION_REQUESTED and not batch.get("consolidation_message_id")
    if not unpublished:
        return False, None
    if batch.get("consolidation_claimant") == claimant:
        return True, None
    requested = batch.get("consolidation_requested_at")
    if take_over or requested is None or now - requested >= CLAIM_GRACE:
        return True, claim
    return False, None


# -- the consolidation lease ------------------------------------------------------------------
def decide_lease(batch: dict, token: str, now: dt.datetime) -> Decision[tuple[LeaseVerdict, dict]]:
    """('run', batch) when the delivery holding `token` may consolidate, ('done', batch) when the batch
    is past consolidation, ('busy', batch) when another live delivery holds the lease or the batch is
    not yet claimed. The token is unique per delivery: two deliveries of one message are two holders."""
    status = batch["status"]
    if status in TERMINAL_STATUSES:
        return (LeaseVerdict.DONE, batch), None
    if status == CONSOLIDATING:
        holder = batch.get("lease_token")
        if holder and holder != token and not lease_expired(batch.get("lease_expires_at"), now):
            return (LeaseVerdict.BUSY, batch), None
    elif status != CONSOLIDATION_REQUESTED:
        return (LeaseVerdict.BUSY, batch), None  # still open: a claim must come first
    update = {"status": CONSOLIDATING, "lease_token": token, "lease_expires_at": now + LEASE_TTL}
    return (LeaseVerdict.RUN, {**batch, **update}), update


def decide_renew(batch: dict, token: str, now: dt.datetime) -> Decision[bool]:
    """Extend the lease only for its holder; False tells the holder it lost the batch and must stop."""
    if batch["status"] != CONSOLIDATING or batch.get("lease_token") != token:
        return False, None
    return True, {"lease_expires_at": now + LEASE_TTL}


def decide_release(batch: dict, token: str) -> Decision[bool]:
    """A holder that stops without a result (an error to be retried) lets the next delivery in now,
    instead of making it wait out the lease."""
    if batch["status"] != CONSOLIDATING or batch.get("lease_token") != token:
        return False, None
    return True, {"lease_token": None, "lease_expires_at": None}


def decide_reopen(batch: dict, date_active_batch: str | None, claimant: str, now: dt.datetime, *,
                  auto: bool) -> Decision[str]:
    """Re-open a `consolidation_failed` batch (its staging table was kept) under a new MERGE
    generation, as a claimed consolidation the caller then publishes or runs. Refused, with the reason
    as result, when a newer run of the date exists: merging an older batch again would overwrite the
    newer batch's rows with older ones. `auto` (the stall check) re-opens only transient failures, at
    most MAX_AUTO_REOPENS times. A verified MERGE result is kept, so a re-open resumes at cleanup."""
    if batch["status"] != CONSOLIDATION_FAILED:
        return f"batch is {batch['status']}, not {CONSOLIDATION_FAILED}", None
    if not auto and claimant in (batch.get("consolidation_claimant"), batch.get("consolidation_message_id")):
        # a redelivery of the operator request that already re-opened it: that attempt failed again,
        # and a permanent failure waits for a new request, not for Pub/Sub
        return "this request already re-opened the batch once", None
    if date_active_batch != batch["batch_id"]:
        return (f"a newer run of {batch['game_date']} ({date_active_batch}) replaced this batch; "
                f"re-consolidating it would overwrite newer rows. The reconciliation finishes its kept rows per "
                f"item (`batchline reconcile {batch['game_date']}`)"), None
    reopens = int(batch.get("auto_reopens") or 0)
    if auto and (batch.get("failure_kind") != TRANSIENT or reopens >= MAX_AUTO_REOPENS):
        return f"not re-opened automatically ({batch.get('failure_kind')} failure, {reopens} re-opens)", None
    update = {"status": CONSOLIDATION_REQUESTED, "consolidation_claimant": claimant,
              "consolidation_requested_at": now, "consolidation_message_id": None,
              "consolidation_reason": "auto_reopen" if auto else "manual",
              "lease_token": None, "lease_expires_at": None, "error": None, "failure_kind": None,
              "merge_attempt": 0, "consolidation_generation": int(batch.get("consolidation_generation") or 0) + 1}
    if auto:
        update["auto_reopens"] = reopens + 1
    return REOPENED, update


def decide_consolidation_dead_letter(batch: dict, now: dt.datetime, error: str) -> Decision[bool]:
    """A consolidation message dead-lettered (it failed transiently on every delivery). The batch is
    failed (transiently) only if nobody is consolidating it now: waiting for its claim, or consolidating
    with a lapsed or released lease. A live holder (a later delivery, a re-open) is left alone."""
    status = batch["status"]
    idle = status == CONSOLIDATION_REQUESTED or (
        status == CONSOLIDATING and (not batch.get("lease_token") or lease_expired(batch.get("lease_expires_at"), now)))
    if not idle:
        return False, None
    return True, {"status": CONSOLIDATION_FAILED, "failure_kind": TRANSIENT, "error": error,
                  "lease_token": None, "lease_expires_at": None}


# -- MERGE attempts ---------------------------------------------------------------------------
def decide_next_merge_attempt(batch: dict, token: str, failed_attempt: int) -> Decision[bool]:
    """Move on from a MERGE attempt that is known to have failed; only the lease holder may, and only
    past the attempt it saw fail, so two callers can never both start a new MERGE."""
    if batch["status"] != CONSOLIDATING or batch.get("lease_token") != token:
        return False, None
    if int(batch.get("merge_attempt") or 0) != failed_attempt:
        return False, None
    return True, {"merge_attempt": failed_attempt + 1}


# -- dispatch ---------------------------------------------------------------------------------
def decide_dispatch_lease(batch: dict, token: str, now: dt.datetime, dead_holder: str | None = None) -> Decision[bool]:
    """Take (or keep) the right to publish a dispatching batch's work messages: its holder renews it
    while publishing; once it lapses the start died, and the next caller resumes the dispatch. A holder
    known dead (`dead_holder`: the start whose control request was taken over after its own lease
    lapsed, control_lifecycle.py) is taken over at once, without waiting out the dispatch lease."""
    if batch["status"] != DISPATCHING:
        return False, None
    holder = batch.get("dispatch_token")
    if (holder and holder != token and holder != dead_holder
            and not lease_expired(batch.get("dispatch_lease_until"), now)):
        return False, None
    return True, {"dispatch_token": token, "dispatch_lease_until": now + DISPATCH_LEASE}


def decide_dispatch_failed(batch: dict, token: str, error: str) -> Decision[bool]:
    """The dispatcher holding the lease saw a publish fail: the batch fails loudly. A dispatcher whose
    lease another took over (it was too slow) changes nothing: the new holder is publishing."""
    if batch["status"] != DISPATCHING or batch.get("dispatch_token") != token:
        return False, None
    return True, {"status": DISPATCH_FAILED, "error": error[:2000], "dispatch_token": None}


def decide_mark_running(batch: dict, token: str, now: dt.datetime) -> Decision[bool]:
    """Dispatching -> running for the dispatcher that holds the dispatch lease; nothing once a claim
    (or another dispatcher) moved the batch on."""
    if batch["status"] != DISPATCHING or batch.get("dispatch_token") != token:
        return False, None
    return True, {"status": RUNNING, "dispatched_at": now, "dispatch_token": None, "dispatch_lease_until": None}


# -- generic guarded transition ---------------------------------------------------------------
def decide_transition(batch: dict, allowed_from: Iterable[str], fields: dict,
                      lease_token: str | None = None) -> Decision[bool]:
    ok = batch["status"] in set(allowed_from) and (lease_token is None or batch.get("lease_token") == lease_token)
    return ok, (fields if ok else None)


# -- items ------------------------------------------------------------------------------------
def completion_is_recorded(item: dict, write_id: str, row_count: int) -> bool:
    """A redelivery of the completion the item already recorded: its write was checked when it was
    recorded (and its table may be gone since). Any other completion of a completed item names another
    write, which must be checked like a new one before it may count as a duplicate."""
    return item["status"] == COMPLETED and item.get("write_id") == write_id and item.get("row_count") == row_count


def decide_completion(item: dict, *, late: bool, staging_table: str, row_count: int, attempt: int,
                      now: dt.datetime, write_id: str | None = None) -> Decision[CompletionResult]:
    """'recorded', 'late' or 'duplicate'; a completion overrides a failure (its rows are durable)."""
    if item["status"] == COMPLETED:
        return CompletionResult.DUPLICATE, None
    return (CompletionResult.LATE if late else CompletionResult.RECORDED), {
        "status": COMPLETED, "staging_table": staging_table, "write_id": write_id, "row_count": row_count,
        "attempt": attempt, "previous_status": item["status"], "late": late, "updated_at": now}


def decide_failure(item: dict, reason: str, now: dt.datetime, *,
                   dead_lettered: bool = False) -> Decision[FailureResult]:
    """'recorded', 'already_completed' or 'duplicate'; a failure never overrides a completion."""
    if item["status"] == COMPLETED:
        return FailureResult.ALREADY_COMPLETED, None
    if item["status"] == FAILED:
        return FailureResult.DUPLICATE, None
    update = {"status": FAILED, "failure_reason": reason, "updated_at": now}
    if dead_lettered:
        update["dead_lettered_at"] = now
    return FailureResult.RECORDED, update


def decide_claim_rejected(item: dict, *, claimed_write: str, action: str, reason: str, now: dt.datetime,
                          switch_to: tuple[str, int] | None = None,
                          failure_reason: str | None = None) -> Decision[ClaimVerdict]:
    """Apply the bulk verification's verdict on an item's claim (batchline/domain/claims.py): `action` once,
    and only to the claim that was judged (a newer completion, or another verifier, moved it on: then
    'stale'). The rejected claim is kept on the item with its reason. 'switch' moves the claim to
    another complete write of the item, 'redispatch' returns the item to pending (its shard count goes
    down with it), 'fail' makes it terminal with `failure_reason`."""
    if item["status"] != COMPLETED or item.get("write_id") != claimed_write:
        return ClaimVerdict.STALE, None
    entry = {"write_id": claimed_write, "row_count": item.get("row_count"), "reason": reason[:1000], "at": now}
    update: dict = {"rejected_claims": [*(item.get("rejected_claims") or []), entry], "claim_rejected_at": now}
    if action == ClaimVerdict.SWITCH and switch_to is not None:
        update.update(write_id=switch_to[0], row_count=switch_to[1])
    elif action == ClaimVerdict.REDISPATCH:
        update.update(status=PENDING, write_id=None, row_count=None, updated_at=now)
    elif action == ClaimVerdict.FAIL:
        update.update(status=FAILED, failure_reason=(failure_reason or reason)[:2000], updated_at=now)
    else:
        raise ValueError(f"unknown claim verdict {action!r}")
    return action, update


