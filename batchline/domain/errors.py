"""Every error that crosses a layer, in one place: what batch state, the staging table, a message or
a start can be wrong about. batchline/http.py maps each to its HTTP answer (4xx: a retry cannot fix it,
409/424: refused for now, 5xx: Pub/Sub redelivers); flows raise and catch them by these names."""

from __future__ import annotations

import datetime as dt

from batchline.domain.runs import conflict_advice


class InvalidMessage(ValueError):
    """The request or message is malformed; retrying it will not help."""


class BatchConflict(Exception):
    """The date's batch keeps this start from running now (still active, or, for a repair, failed
    consolidation); the caller answers 409 naming it, with what to do (conflict_advice)."""

    def __init__(self, batch_id: str, status: str, *, repair: bool = False, reason: str | None = None):
        super().__init__(reason or conflict_advice(batch_id, status, repair=repair))
        self.batch_id = batch_id
        self.status = status


class RepairAlreadyAttempted(Exception):
    """Every item of a repair was already repaired once since the date's last full run; another repair
    would only repeat it (the reconciliation reports the gap instead, unless an operator forces it)."""

    def __init__(self, batch_id: str | None, items: list[str]):
        super().__init__(f"items {items[:20]} were already repaired by batch {batch_id}")
        self.batch_id = batch_id
        self.items = items


class ContentionError(RuntimeError):
    """A compare-and-set kept losing; the handler answers 5xx and Pub/Sub redelivers."""


class UnknownItem(LookupError):
    """A message names an item that its batch does not have."""


class UnknownBatch(UnknownItem):
    """A message or request names a batch that batch state does not know. A kind of UnknownItem (an
    unknown batch has no item either), so every handler that refuses one refuses the other alike."""


class FaultInjected(RuntimeError):
    """Raised where a fault was injected; handled exactly like the real failure it stands for."""


class ConsolidationError(RuntimeError):
    """A permanent consolidation failure: recorded as the batch's terminal state, tables kept."""


class SchemaIncompatible(ConsolidationError):
    pass


class RecordRefused(RuntimeError):
    """Firestore refused a record for good (400: the document too large, too many index entries): the
    same write can never succeed, so what it would have recorded is reported another way."""


class MergeAttemptFailed(RuntimeError):
    """The MERGE job of this attempt finished with a passing error (BigQuery says DONE, with an error
    it classifies as retryable): no row changed, and the next attempt may run under a new job id."""

    def __init__(self, job_id: str, error: str):
        super().__init__(f"MERGE {job_id} failed transiently: {error}")
        self.job_id = job_id


class StagingTableMissing(RuntimeError):
    """The batch's staging table does not exist (never created, or dropped after consolidation)."""


class MainTableMissing(LookupError):
    """The main table does not exist (yet): nothing of any date has landed."""


class StaleInputs(Exception):
    """The date's context rows are too old (or carry no load time); answered 424 Failed Dependency."""

    def __init__(self, game_date: dt.date, newest_loaded_at: dt.datetime | None, max_age_hours: int, rows: int):
        when = newest_loaded_at.isoformat() if newest_loaded_at else "never (no row carries loaded_at)"
        super().__init__(f"context rows for {game_date} are stale: newest load {when}, older than the "
                         f"{max_age_hours} h allowed; load the date's context, then start again (if the rows are "
                         f"known good: `batchline start {game_date} --accept-stale-inputs`)")
        self.game_date = game_date.isoformat()
        self.newest_loaded_at = newest_loaded_at.isoformat() if newest_loaded_at else None
        self.max_age_hours = max_age_hours
        self.rows = rows


class StallCheckErrors(RuntimeError):
    """Some batches could not be checked; the others were. Answered 5xx so the scheduler retries."""


class DispatchLost(RuntimeError):
    """Another dispatcher took the lease (this one was too slow); it carries on, this one stops."""


class InvalidRows(ValueError):
    """The predictor produced rows the main table cannot take (e.g. a prediction id twice)."""


class ControlBusy(RuntimeError):
    """Another live delivery of the same request is running it; answered 5xx, so this one comes back."""


class DispatchStillHeld(RuntimeError):
    """The batch an earlier attempt started is still held by a dispatcher that renews its lease:
    a transient answer (5xx), so a later delivery looks again."""
