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
import hashlib
import uuid
from dataclasses import asdict, dataclass, field

from batchline.adapters import manifests, queries, staging
from batchline.adapters import merge as cons
from batchline.adapters.batch_store import BatchStore, now
from batchline.adapters.clients import Clients
from batchline.domain import evidence, ids
from batchline.domain.accounting import ORPHAN_GENERATION_BASE, merged_pins
from batchline.domain.errors import ConsolidationError, MergeAttemptFailed
from batchline.domain.statuses import ACTIVE_STATUSES, CONSOLIDATION_FAILED
from batchline.logs import log_event


@dataclass
class OrphanReport:
    merged: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # `<table>/<item>` (or a table) -> why it is kept
    # tables of other dates' batches: reported with the date to reconcile, never this date's verdict
    elsewhere: dict[str, str] = field(default_factory=dict)
    merge_jobs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


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


def classify(
    item: str | None,
    schedule: set[str],
    owners: set[str],
    batch_id: str,
    created_at: dt.datetime,
    created: dict[str, dt.datetime | None],
) -> tuple[str, str]:
    """What to do with batch `batch_id`'s orphaned staging table of `item`, given the batches whose rows
    are the item's active rows in the main table (`owners`) and when each batch was created:
    ("merge", ""), ("drop", the newer batch whose rows replace it) or ("keep", why)."""
    if item is None or item not in schedule:
        return "keep", "its player is not on the date's schedule"
    others = owners - {batch_id}
    newer = sorted(o for o in others if created.get(o) and created[o] > created_at)  # type: ignore[operator]
    if newer:
        return "drop", newer[0]
    undated = sorted(o for o in others if not created.get(o))
    if undated:
        return "keep", f"the player's active rows come from {undated[0]}, which no batch document dates"
    return "merge", ""  # a gap, this batch's own rows, or rows of older runs: this run is the newest


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
    merge: dict[str, str] = {}  # item -> write id
    drop: dict[str, str] = {}  # item -> why its rows may go
    kept: dict[str, str] = {}
    newer_batches: set[str] = set()
    for item, writes in sorted(staging.staged_writes(clients.bq, clients.settings, batch_id).items()):
        if item in own:
            continue  # merged by the batch's own verified MERGE or an earlier orphan MERGE; the rest is abandoned
        verdict, detail = classify(
            item if item in docs else None, schedule, owners.get(item, set()), batch_id, mine, created
        )
        if verdict == "merge":
            chosen = evidence.choose_write(docs[item], writes)[0]
            if chosen is None:
                kept[item] = "no staged write of the item is complete (one row per system x prop, ids unique)"
                continue
            merge[item] = chosen.write_id
        elif verdict == "drop":
            drop[item] = f"the player's active rows come from the newer batch {detail}"
            newer_batches.add(detail)
        else:
            kept[item] = detail
    if merge and not _merge(clients, store, game_date, batch, merge, sorted(set(owners) | set(merge)), report):
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


def _merge(
    clients: Clients,
    store: BatchStore,
    game_date: dt.date,
    batch: dict,
    manifest: dict[str, str],
    scheduled: list[str],
    report: OrphanReport,
) -> bool:
    """One MERGE of a batch's orphaned writes, from a pin of their own in the manifest table
    (batchline/adapters/manifests.py); a redelivered reconciliation with the same writes finds the same pin and
    job (the pending record names generation, pin and the writes' digest), and a failed one is retried
    by the next run under a new generation, with the table kept meanwhile. True when merged and verified."""
    batch_id = batch["batch_id"]
    table = ids.batch_staging_table(batch_id)
    pending = batch.get("orphan_merge_pending") or {}
    digest = hashlib.sha256("\n".join(f"{i}/{w}" for i, w in sorted(manifest.items())).encode()).hexdigest()
    if pending.get("digest") == digest and pending.get("pin"):
        generation, pin = int(pending["generation"]), pending["pin"]
    else:
        generation = max(int(batch.get("orphan_generation") or 0) + 1, ORPHAN_GENERATION_BASE)
        pin = ids.new_pin(generation, 0)
        manifests.write(
            clients.bq,
            clients.appender,
            clients.settings,
            manifests.rows(batch_id, pin, manifest, (), scheduled, now()),
        )
    store.set_batch_fields(
        batch_id,
        {
            "orphan_generation": generation,
            "orphan_merge_pending": {"generation": generation, "pin": pin, "digest": digest, "items": len(manifest)},
        },
    )
    try:
        result = cons.merge_staging(
            clients.bq,
            clients.settings,
            batch_id,
            game_date,
            pin,
            len(manifest),
            generation=generation,
            verify_only_merged=True,
        )
    except (ConsolidationError, MergeAttemptFailed) as exc:
        store.set_batch_fields(batch_id, {"orphan_merge_pending": None, "orphan_merge_error": str(exc)[:2000]})
        log_event(
            "orphan_merge_failed",
            severity="ERROR",
            batch_id=batch_id,
            game_date=game_date,
            items=sorted(manifest)[:200],
            error=str(exc),
        )
        return False
    store.record_orphans_merged(
        batch_id,
        {"job_id": result.job_id, "pin": pin, "items": len(manifest), "rows": result.verified_rows, "at": now()},
        result.job_id,
    )
    log_event(
        "orphans_merged",
        batch_id=batch_id,
        game_date=game_date,
        job_id=result.job_id,
        items=sorted(manifest)[:200],
        pin=pin,
        affected_rows=result.affected_rows,
        verified_rows=result.verified_rows,
    )
    report.merged += [f"{table}/{i}" for i in sorted(manifest)]
    report.merge_jobs.append(result.job_id)
    return True
