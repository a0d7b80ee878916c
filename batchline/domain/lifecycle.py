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
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar


class BatchStatus(StrEnum):
    """A batch document's `status`. StrEnum members are str: written to Firestore, JSON or a log they
    are the plain value, and a status read back (a plain str) compares equal to its member."""

    DISPATCHING = "dispatching"
    RUNNING = "running"
    CONSOLIDATION_REQUESTED = "consolidation_requested"
    CONSOLIDATING = "consolidating"
    CONSOLIDATED = "consolidated"
    CONSOLIDATION_FAILED = "consolidation_failed"
    DISPATCH_FAILED = "dispatch_failed"
    SUPERSEDED = "superseded"


class ItemStatus(StrEnum):
    """An item document's `status`."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


class FailureKind(StrEnum):
    """How a consolidation failed (`failure_kind`): a transient one (retried and dead-lettered, BigQuery
    unavailable) is re-opened by the stall check on its own, at most MAX_AUTO_REOPENS times; a permanent
    one (schema, 0-row MERGE, verification) waits for a person, with its staging table kept. Merged-
    unrecorded: the MERGE committed and was verified but Firestore refused its record for good (too
    large): the rows are in the main table; a re-open by a person records the same job, never a second MERGE."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    MERGED_UNRECORDED = "merged_unrecorded"


class LeaseVerdict(StrEnum):
    """What decide_lease tells a consolidation delivery: run it, the batch is done, or someone else has it."""

    RUN = "run"
    DONE = "done"
    BUSY = "busy"


class CompletionResult(StrEnum):
    """What recording a completion did (decide_completion): 'late' is recorded too, past consolidation."""

    RECORDED = "recorded"
    LATE = "late"
    DUPLICATE = "duplicate"


class FailureResult(StrEnum):
    """What recording a failure did (decide_failure): never over a completion."""

    RECORDED = "recorded"
    ALREADY_COMPLETED = "already_completed"
    DUPLICATE = "duplicate"


class ClaimVerdict(StrEnum):
    """The bulk verification's verdict on a claim (batchline/domain/claims.py), and 'stale' when the
    claim judged was moved on before the verdict was applied (decide_claim_rejected)."""

    SWITCH = "switch"
    REDISPATCH = "redispatch"
    FAIL = "fail"
    STALE = "stale"


# The module-level names importers use (lc.RUNNING, `from ... import COMPLETED`): the members themselves.
DISPATCHING = BatchStatus.DISPATCHING
RUNNING = BatchStatus.RUNNING
CONSOLIDATION_REQUESTED = BatchStatus.CONSOLIDATION_REQUESTED
CONSOLIDATING = BatchStatus.CONSOLIDATING
CONSOLIDATED = BatchStatus.CONSOLIDATED
CONSOLIDATION_FAILED = BatchStatus.CONSOLIDATION_FAILED
DISPATCH_FAILED = BatchStatus.DISPATCH_FAILED
SUPERSEDED = BatchStatus.SUPERSEDED
OPEN_STATUSES = (DISPATCHING, RUNNING)
ACTIVE_STATUSES = (DISPATCHING, RUNNING, CONSOLIDATION_REQUESTED, CONSOLIDATING)
TERMINAL_STATUSES = (CONSOLIDATED, CONSOLIDATION_FAILED, DISPATCH_FAILED, SUPERSEDED)

PENDING = ItemStatus.PENDING
COMPLETED = ItemStatus.COMPLETED
FAILED = ItemStatus.FAILED

TRANSIENT = FailureKind.TRANSIENT
PERMANENT = FailureKind.PERMANENT
MERGED_UNRECORDED = FailureKind.MERGED_UNRECORDED
MAX_AUTO_REOPENS = 3
#: decide_reopen's result when it re-opens the batch; any other result is why it refused (free text).
REOPENED = "reopened"

# A holder renews its lease every LEASE_TTL / 4; a lease not renewed for LEASE_TTL is dead.
LEASE_TTL = dt.timedelta(seconds=60)
# A consolidation claimed but not published after this long: its claimant died; anyone may publish.
CLAIM_GRACE = dt.timedelta(seconds=60)
# A start renews this while it publishes; a dispatch silent for this long is resumed by the next caller.
DISPATCH_LEASE = dt.timedelta(seconds=60)

R = TypeVar("R")
#: (result, the fields to write or None): what every decide_* returns, typed by its result.
Decision = tuple[R, dict | None]


def _expired(deadline: dt.datetime | None, now: dt.datetime) -> bool:
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
        if holder and holder != token and not _expired(batch.get("lease_expires_at"), now):
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
        status == CONSOLIDATING and (not batch.get("lease_token") or _expired(batch.get("lease_expires_at"), now)))
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
    if holder and holder != token and holder != dead_holder and not _expired(batch.get("dispatch_lease_until"), now):
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


# -- starts and repairs of a date ---------------------------------------------------------------
MERGING_ORPHANS = "merging_orphans"  # the conflict a start meets while the reconciliation holds the date


def conflict_advice(batch_id: str, status: str, *, repair: bool) -> str:
    """Why a start (`repair`: a batch of some items) may not run now, and what does work then."""
    if status == MERGING_ORPHANS:
        return (f"the reconciliation is merging this date's orphaned staged rows (batch {batch_id}); start "
                f"again in a minute (its lock lapses after 10 minutes)")
    if status in (CONSOLIDATION_REQUESTED, CONSOLIDATING):
        return f"batch {batch_id} for this date is still {status}; start again once its consolidation ended"
    if repair:
        return f"batch {batch_id} for this date is still {status}; repair once it ended"
    return f"batch {batch_id} for this date is still {status}; use force to supersede it"


def repair_blocked(newest: str | None, newest_status: str | None, game_date: str) -> str | None:
    """Why a repair batch may not start while the date's newest run failed consolidation, None when it
    may. A repair becomes the date's newest run, and a failed batch is re-consolidated only while it is
    the newest (decide_reopen): its kept rows would be stranded. So it is consolidated (or the date run
    again) first, then repaired."""
    if newest is None or newest_status != CONSOLIDATION_FAILED:
        return None
    return (f"batch {newest}, the newest run of {game_date}, failed consolidation and its staging table holds "
            f"its rows: a repair batch now would replace it and strand them. First fix the cause and "
            f"re-consolidate it (`batchline consolidate {newest} --wait`), or run the whole date again "
            f"(`batchline start {game_date} --wait`); then repair")


def decide_repair(date_doc: dict, only_items: list[str], batch_id: str, *, repeat: bool) -> Decision[str | None]:
    """Whether a repair batch of `only_items` may start, and the date document's repair record: the
    items repaired since the date's last full run (a full run writes the date document afresh). A
    repair whose items were all repaired already is refused (result: the batch that repaired them)
    unless `repeat` (an operator after a fix)."""
    repaired = set(date_doc.get("repaired_items") or [])
    if set(only_items) <= repaired and not repeat:
        return date_doc.get("last_repair_batch_id") or "unknown", None
    return None, {"repaired_items": sorted(repaired | set(only_items)), "last_repair_batch_id": batch_id}


def orphan_merge_held(date_doc: dict, now: dt.datetime) -> bool:
    """A reconciliation holds the date's orphan-merge lease: no batch of the date may start meanwhile."""
    return bool(date_doc.get("orphan_merge_token")) and not _expired(date_doc.get("orphan_merge_until"), now)


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


# The reconciliation merges orphaned staged rows of a date under this lease on the date document;
# a start of the date waits (409) while it is held, so no batch MERGE can race an orphan MERGE.
ORPHAN_LEASE = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Item:
    """One work item of a batch: a player of the date's schedule and the game it plays in."""

    item_id: str
    game_id: str


# -- registering a new run of a date ---------------------------------------------------------------
@dataclass(frozen=True)
class NewRun:
    """What registering a new run of a date decides (decide_new_run). Exactly one of: a conflict (the
    date is held), `repaired_by` (a repair whose items were all repaired already), or the date
    document's update (with the run it supersedes, if any)."""

    superseded: str | None = None
    date_update: dict | None = None
    conflict: tuple[str, str | None, str | None] | None = None  # (holding batch, its status, why)
    repaired_by: str | None = None


def decide_new_run(
    date_doc: dict,
    previous_status: str | None,
    *,
    batch_id: str,
    game_date: str,
    force: bool,
    only_items: list[str] | None,
    repeat_repair: bool,
    now: dt.datetime,
) -> NewRun:
    """Whether batch `batch_id` may become the date's active run, given the date document and the status
    of its active run. The reconciliation's orphan-merge lease holds every start; a repair (`only_items`)
    is refused while the date's newest run failed consolidation (repair_blocked); an active run
    holds a plain start, and even a forced one while it consolidates (superseding it mid-MERGE could land
    the old batch's rows after the new one's). Repairs accumulate on the date document since its last
    full run (decide_repair), which a full run starts afresh."""
    previous = date_doc.get("active_batch_id")
    if orphan_merge_held(date_doc, now):
        return NewRun(conflict=(str(date_doc.get("orphan_merge_batch_id") or previous), MERGING_ORPHANS, None))
    superseded = None
    if previous:
        blocked = repair_blocked(previous, previous_status, game_date) if only_items is not None else None
        if blocked:
            return NewRun(conflict=(previous, previous_status, blocked))
        if previous_status in ACTIVE_STATUSES:
            if not force or previous_status in (CONSOLIDATION_REQUESTED, CONSOLIDATING):
                return NewRun(conflict=(previous, previous_status, None))
            superseded = previous
    date_update = {"active_batch_id": batch_id, "updated_at": now}
    if only_items is not None:
        repaired_by, record = decide_repair(date_doc, only_items, batch_id, repeat=repeat_repair)
        if record is None:
            return NewRun(repaired_by=str(repaired_by))
        date_update.update(record)
    return NewRun(superseded=superseded, date_update=date_update)


def new_batch_document(
    batch_id: str,
    game_date: str,
    item_ids: list[str],
    shard_sizes: list[int],
    *,
    force: bool,
    faults: str | None,
    dispatch_token: str,
    only_items: list[str] | None,
    scheduled_items: list[str] | None,
    now: dt.datetime,
) -> dict:
    """A new run's batch document: dispatching, born holding its starter's dispatch lease; one `now`, so
    created_at and updated_at agree."""
    return {
        "batch_id": batch_id,
        "game_date": game_date,
        "status": DISPATCHING,
        "expected_items": len(item_ids),
        "progress_shard_items": shard_sizes,
        "force": force,
        "faults": faults,
        "dispatch_token": dispatch_token,
        "dispatch_lease_until": now + DISPATCH_LEASE,
        "only_items": only_items,
        "scheduled_items": scheduled_items,
        "created_at": now,
        "updated_at": now,
    }


def superseded_update(by: str, now: dt.datetime) -> dict:
    return {"status": SUPERSEDED, "superseded_by": by, "updated_at": now}


# -- the date's orphan-merge lease -----------------------------------------------------------------
def decide_orphan_lease(
    date_doc: dict, active_status: str | None, token: str, label: str, game_date: str, now: dt.datetime
) -> Decision[str | None]:
    """(None, the lease fields) when the reconciliation holding `token` may merge the date's orphans now,
    (why not, None) otherwise: another reconciliation holds it, or the date's newest run is still active
    or failed consolidation (its orphans wait for it)."""
    if date_doc.get("orphan_merge_token") != token and orphan_merge_held(date_doc, now):
        return "another reconciliation is merging this date's orphans", None
    active = date_doc.get("active_batch_id")
    if active and active_status in ACTIVE_STATUSES:
        return f"the date's batch {active} is still {active_status}; its orphans wait for it", None
    if active and active_status == CONSOLIDATION_FAILED:
        return (
            f"the date's newest batch {active} failed consolidation: fix the cause and re-consolidate it "
            f"(`batchline consolidate {active} --wait`), or run the date again (`batchline start {game_date} "
            f"--wait`); its orphans wait for that"
        ), None
    return None, {
        "orphan_merge_token": token,
        "orphan_merge_until": now + ORPHAN_LEASE,
        "orphan_merge_batch_id": label,
        "updated_at": now,
    }
