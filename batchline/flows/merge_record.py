"""A committed MERGE is recorded, or recorded later, and never run again (issue 18 item 3).

Every MERGE attempt runs under a deterministic job id (consolidate.merge_job_id) with its manifest
pinned before the job is submitted (batches/{id}/manifests/g<generation>_a<attempt>). So whoever
consolidates a batch that has no recorded result (a redelivery, the stall check's re-open after a dead
letter, an operator's re-open) first asks BigQuery about the job of every pinned attempt: a job still
running is waited for, and a job that finished without an error committed its rows, so its pinned
manifest is verified and recorded instead of merging again. This reads the pinned manifests and the
jobs, not the batch document's `merge_result`, so it holds wherever the manifest is kept.

A record Firestore refuses for good (400: too large, too many index entries) fails the batch saying
what is true: the rows ARE merged; the re-open after the cause is fixed records the same job.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchline.adapters.batch_store import BatchStore
from batchline.adapters.merge import merge_job_id
from batchline.adapters.merge_jobs import RUNNING, SUCCEEDED, job_state
from batchline.domain.errors import RecordRefused
from batchline.domain.faults import FaultSpec
from batchline.domain.statuses import CONSOLIDATION_FAILED, MERGED_UNRECORDED
from batchline.logs import log_event

Attempt = tuple[int, int]  # (generation, attempt)


@dataclass(frozen=True)
class CommittedMerge:
    generation: int
    attempt: int
    job_id: str
    state: str  # RUNNING (to be waited for) or SUCCEEDED
    pinned: dict  # the manifest the job read, as pin_manifest stored it


def choose(states: dict[Attempt, str], rejected: set[Attempt]) -> Attempt | None:
    """The attempt whose job must be used instead of a new MERGE, or None when a new one may run.

    A running job comes first (a second MERGE beside it would be concurrent DML on the main table); then
    the newest job that succeeded and whose verification was not rejected (a rejected one, e.g. a 0-row
    MERGE, is what a re-open runs a new generation for)."""
    running = sorted(a for a, s in states.items() if s == RUNNING)
    if running:
        return running[-1]
    done = sorted(a for a, s in states.items() if s == SUCCEEDED and a not in rejected)
    return done[-1] if done else None


def find_committed(bq, store: BatchStore, batch: dict) -> CommittedMerge | None:
    """The MERGE of this batch that already ran (or runs), with the manifest it read; None if none did.
    `bq` is the BigQuery client of Clients, asked only through batchline/adapters/merge_jobs.py."""
    batch_id = batch["batch_id"]
    pinned = store.pinned_manifests(batch_id)
    rejected_jobs = set(batch.get("rejected_merge_jobs") or [])
    rejected = {a for a in pinned if merge_job_id(batch_id, *a) in rejected_jobs}
    states = {a: job_state(bq, merge_job_id(batch_id, *a)) for a in pinned}
    chosen = choose(states, rejected)
    if chosen is None:
        return None
    return CommittedMerge(chosen[0], chosen[1], merge_job_id(batch_id, *chosen), states[chosen], pinned[chosen])


# -- recording a committed MERGE -------------------------------------------------------------------
RECORDED, LEASE_LOST, UNRECORDABLE = "recorded", "lease_lost", "unrecordable"


def record_merge(store: BatchStore, batch_id: str, lease: str, merged: dict, job_id: str, faults: FaultSpec,
                 verified: tuple[int, int]) -> str:
    """Record the verified result of MERGE `job_id`: RECORDED, LEASE_LOST (another delivery holds the
    batch and will record it), or UNRECORDABLE when Firestore refuses the write for good (400: the
    document too large or with too many index entries) and the batch is failed saying its rows ARE
    merged. Any other error propagates: the redelivery finds the job and records it (find_committed).
    `verified` is (rows, items) of the verification."""
    try:
        ok = store.record_merge_result(batch_id, lease, merged, job_id, faults)
    except RecordRefused as exc:
        return unrecordable(store, batch_id, lease, job_id, verified, exc, kept_staging=True)
    return RECORDED if ok else LEASE_LOST


def record_final(store: BatchStore, batch_id: str, lease: str, merged: dict, fields: dict) -> bool | str:
    """The consolidated batch's final record; "unrecordable" (reported like record_merge) when Firestore
    refuses it for good, else whether the lease was still held."""
    try:
        return store.record_consolidated(batch_id, lease, fields)
    except RecordRefused as exc:
        return unrecordable(store, batch_id, lease, str(merged.get("job_id")),
                            (int(merged.get("verified_rows", 0)), int(merged.get("verified_items", 0))), exc,
                            kept_staging=False)


def unrecordable(store: BatchStore, batch_id: str, lease: str, job_id: str, verified: tuple[int, int],
                 exc: Exception, *, kept_staging: bool) -> str:
    """Fail the batch with a reason that says what is true: the MERGE committed and was verified, its
    rows are in the main table, only the record is missing. A small write of fixed size, so it fits
    where the refused one did not; a re-open (`batchline consolidate`) then records the same job."""
    rows, items = verified
    reason = (f"MERGE {job_id} committed and was verified: {rows} rows of {items} items ARE in the main table; "
              f"recording the result in Firestore failed for good ({exc}). Do not re-run the date for it: fix "
              f"the cause (index exemptions, document size: docs/staging.md), then `batchline consolidate "
              f"{batch_id}` records this job without a second MERGE."
              + (" The staging table is kept." if kept_staging else ""))
    moved = store.fail_merged_unrecorded(batch_id, lease, job_id, {
        "status": CONSOLIDATION_FAILED, "failure_kind": MERGED_UNRECORDED, "error": reason[:4000],
        "merged_job_id": job_id, "merged_rows_unrecorded": rows, "merged_items_unrecorded": items})
    log_event("merge_unrecorded", severity="ERROR", batch_id=batch_id, job_id=job_id, verified_rows=rows,
              verified_items=items, error=str(exc)[:2000], message=reason)
    return UNRECORDABLE if moved else LEASE_LOST
