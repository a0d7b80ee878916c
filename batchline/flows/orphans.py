"""Orphaned staged rows: the reconciliation finishes what a batch left behind (F6, F9 layer 6).

A batch staging table outlives its consolidation when rows arrived after the inventory (a worker that
found the batch open just before), when its batch was superseded or failed to dispatch after some work
ran, or when a cleanup died. Each item staged in the table of a batch of the date being reconciled is
decided on evidence in the main table and in batch state, never on age alone (entries are reported as
`<table>/<item>`):

- its batch ended (consolidated, superseded, dispatch_failed, or failed consolidation and replaced by a
  newer run, which its re-open then refuses) and its player is on the date's schedule:
  - an item the batch's own verified MERGE merged: nothing to do (its other writes are abandoned
    attempts);
  - the main table holds no active rows for the player, or only rows of this batch or of batches
    created before it: one write of the item (the one its completion recorded, else a complete one)
    is merged with one MERGE per batch (consolidate.merge_staging, under a MERGE generation of its own,
    ORPHAN_GENERATION_BASE and up, so its job ids never collide with the batch's own consolidation),
    verified, recorded on the batch document (`orphans_merged`);
  - the main table holds active rows for the player from a newer batch: superseded evidence (merging
    it would overwrite newer rows with older ones); recorded (`orphans_dropped`) and logged, naming
    the newer batch;
- anything else is kept and reported with its reason: a batch still active (reported once older than
  BATCHLINE_ORPHAN_AGE_HOURS; the stall check owns active batches), a failed consolidation of the
  date's newest run (kept for `batchline consolidate`, the one re-open that works), an unknown batch,
  a player no longer scheduled, main-table rows from a batch no document dates.
Another date's tables (by the batch document's date, else the date the batch id begins with) are
reported apart (`elsewhere`, with the date to reconcile): they never fail this date's verdict.
The table is dropped only when every item in it is merged or superseded; otherwise it stays whole.

The merges of a date run under a lease on its date document, taken only while the date's newest batch
has ended without failing consolidation; a start of the date waits (409) while it is held, so no batch
MERGE of the date can land between the ownership check and the orphan MERGE. The MERGE's scheduled
items are every player with active rows plus the merged ones, so it deactivates nobody else's rows.
"""

from __future__ import annotations

import datetime as dt
import uuid

from batchline.adapters import manifests, queries, staging
from batchline.adapters.batch_store import BatchStore, now
from batchline.adapters.clients import Clients
from batchline.domain import evidence, ids
from batchline.domain.accounting import merged_pins
from batchline.domain.statuses import ACTIVE_STATUSES, CONSOLIDATION_FAILED
from batchline.flows.orphan_merge import OrphanReport, merge_orphans
from batchline.logs import log_event


def _groups(clients: Clients) -> dict[str, list]:
    """Batch staging tables by the batch id in their name."""
    s = clients.settings
    groups: dict[str, list] = {}
    for t in staging.list_all_tables(clients.bq, f"{s.project}.{s.staging_dataset}"):
        batch_id = ids.batch_of_staging_table(t.table_id)
        if batch_id is not None:
            groups.setdefault(batch_id, []).append(t)
    return groups


def table_date(batch_id: str, batch: dict | None) -> dt.date | None:
    """The date a batch staging table belongs to: its batch document's, else the date its batch id
    begins with. A date's reconciliation judges only its own tables and reports the others."""
    return dt.date.fromisoformat(batch["game_date"]) if batch else ids.date_of_batch_id(batch_id)


def _get_batch(store: BatchStore, batch_id: str) -> dict | None:
    try:
        return store.get_batch(ids.validate_batch_id(batch_id))
    except ValueError:
        return None


def handle_orphans(clients: Clients, game_date: dt.date, schedule: set[str]) -> OrphanReport:
    s = clients.settings
    store = clients.batches
    report = OrphanReport()
    candidates: dict[str, tuple[dict, list[str]]] = {}
    age = dt.timedelta(hours=s.orphan_age_hours)
    newest = store.active_batch_of(game_date)
    for batch_id, tables in sorted(_groups(clients).items()):
        names = sorted(t.table_id for t in tables)
        batch = _get_batch(store, batch_id)
        status = batch["status"] if batch else None
        day = table_date(batch_id, batch)
        if status in ACTIVE_STATUSES:
            stale = f"batch still {status} after {s.orphan_age_hours} h; the stall check owns it"
            (report.kept if day == game_date else report.elsewhere).update(
                {t.table_id: stale for t in tables if t.created is None or now() - t.created > age}
            )
            continue
        if day != game_date:
            report.elsewhere.update(
                dict.fromkeys(
                    names,
                    f"a table of {day}; reconcile that date to finish it" if day else "its batch id names no date",
                )
            )
            continue
        if batch is None:
            reason = "no batch document records this batch"
        elif status == CONSOLIDATION_FAILED and batch_id == newest:
            reason = (
                f"its batch's consolidation failed and it is the date's newest run: fix the cause, then "
                f"`batchline consolidate {batch_id} --wait`"
            )
        else:  # ended; a failed batch a newer run replaced is never re-opened, so it is finished per item
            candidates[batch_id] = (batch, names)
            continue
        report.kept.update(dict.fromkeys(names, reason))
    if not candidates:
        return report
    token = uuid.uuid4().hex
    busy = store.take_orphan_lease(game_date, token, min(candidates))
    if busy:
        for _, names in candidates.values():
            report.kept.update(dict.fromkeys(names, busy))
        return report
    try:
        # Newest batch first: once its orphans are merged, an older batch's table of the same player
        # is recognised as superseded instead of being merged over them.
        for batch, names in sorted(candidates.values(), key=lambda c: c[0]["created_at"], reverse=True):
            _finish(clients, store, game_date, schedule, batch, names, report)
    finally:
        store.release_orphan_lease(game_date, token)
    return report


def _finish(
    clients: Clients,
    store: BatchStore,
    game_date: dt.date,
    schedule: set[str],
    batch: dict,
    names: list[str],
    report: OrphanReport,
) -> None:
    batch_id, mine = batch["batch_id"], batch["created_at"]
    table = ids.batch_staging_table(batch_id)
    owners = queries.active_owners(clients.bq, clients.settings, game_date)
    created = {b: (_get_batch(store, b) or {}).get("created_at") for b in set().union(*owners.values())}
    own = manifests.merged_items(clients.bq, clients.settings, batch_id, merged_pins(batch))
    docs = {d["item_id"]: d for d in store.items(batch_id)}
    staged = staging.staged_writes(clients.bq, clients.settings, batch_id)
    v = evidence.judge_orphans(staged, own, docs, schedule, owners, batch_id, mine, created)
    merge, drop, kept, newer_batches = v.merge, v.drop, v.kept, v.newer_batches
    if merge and not merge_orphans(clients, store, game_date, batch, merge, sorted(set(owners) | set(merge)), report):
        kept.update(dict.fromkeys(merge, "orphan MERGE failed, rows kept"))
    if drop:
        # Recorded before anything is deleted; the main table's active rows for these players come
        # from the newer batches named (checked just now, under the date's lease).
        store.record_orphans_dropped(
            batch_id, {"items": sorted(drop), "why": drop, "newer_batches": sorted(newer_batches), "at": now()}
        )
        log_event(
            "orphans_dropped",
            severity="WARNING",
            batch_id=batch_id,
            game_date=game_date,
            items=sorted(drop),
            why=drop,
            newer_batches=sorted(newer_batches),
            message="orphaned staged rows given up without merging: a newer run replaced them",
        )
        report.dropped += [f"{table}/{i}" for i in sorted(drop)]
    report.kept.update({f"{table}/{i}": why for i, why in kept.items()})
    if not kept:
        # every item in the table is merged (by the batch or just now) or superseded
        staging.drop_batch_table(clients.bq, clients.settings, batch_id)
        store.set_batch_fields(batch_id, {"staging_table_dropped": True, "staging_table_dropped_by": "reconcile"})
