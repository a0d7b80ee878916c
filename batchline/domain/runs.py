"""A date's runs: registering a new run (the supersede / conflict rule), repairs of some items, and the
reconciliation's orphan-merge lease on the date document. Pure: the batch store applies the decisions
in one transaction on the date and batch documents (batchline/adapters/batch_store/)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from batchline.domain.lifecycle import DISPATCH_LEASE, Decision, lease_expired
from batchline.domain.statuses import (
    ACTIVE_STATUSES,
    CONSOLIDATING,
    CONSOLIDATION_FAILED,
    CONSOLIDATION_REQUESTED,
    DISPATCHING,
    SUPERSEDED,
)

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
    return bool(date_doc.get("orphan_merge_token")) and not lease_expired(date_doc.get("orphan_merge_until"), now)


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
