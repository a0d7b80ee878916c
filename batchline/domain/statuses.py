"""Every status and decision result of batch and item documents, as StrEnum members: a member is a
str, so Firestore documents, JSON and logs hold the plain value, and a value read back compares equal to
its member. The module-level names (COMPLETED, ...) are the members, for short imports."""

from __future__ import annotations

from enum import StrEnum


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


# The module-level names importers use (RUNNING, `from ... import COMPLETED`): the members themselves.
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


#: decide_reopen's result when it re-opens the batch; any other result is why it refused (free text).
REOPENED = "reopened"
