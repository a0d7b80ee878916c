"""One MERGE of a batch's orphaned writes (the reconciliation, batchline/flows/orphans.py), from a pin of
their own in the manifest table (batchline/adapters/manifests.py): a redelivered reconciliation with the
same writes finds the same pin and job (the pending record names generation, pin and the writes'
digest), and a failed one is retried by the next run under a new generation, with the table kept."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass, field

from batchline.adapters import manifests
from batchline.adapters import merge as cons
from batchline.adapters.batch_store import BatchStore, now
from batchline.adapters.clients import Clients
from batchline.domain import ids
from batchline.domain.accounting import ORPHAN_GENERATION_BASE
from batchline.domain.errors import ConsolidationError, MergeAttemptFailed
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


def merge_orphans(clients: Clients, store: BatchStore, game_date: dt.date, batch: dict, manifest: dict[str, str],
                  scheduled: list[str], report: OrphanReport) -> bool:
    """True when the orphaned writes of `manifest` (item -> write id) are merged and verified."""
    batch_id = batch["batch_id"]
    table = ids.batch_staging_table(batch_id)
    pending = batch.get("orphan_merge_pending") or {}
    digest = hashlib.sha256("\n".join(f"{i}/{w}" for i, w in sorted(manifest.items())).encode()).hexdigest()
    if pending.get("digest") == digest and pending.get("pin"):
        generation, pin = int(pending["generation"]), pending["pin"]
    else:
        generation = max(int(batch.get("orphan_generation") or 0) + 1, ORPHAN_GENERATION_BASE)
        pin = ids.new_pin(generation, 0)
        manifests.write(clients.bq, clients.appender, clients.settings,
                        manifests.rows(batch_id, pin, manifest, (), scheduled, now()))
    store.set_batch_fields(batch_id, {"orphan_generation": generation, "orphan_merge_pending": {
        "generation": generation, "pin": pin, "digest": digest, "items": len(manifest)}})
    try:
        result = cons.merge_staging(clients.bq, clients.settings, batch_id, game_date, pin, len(manifest),
                                    generation=generation, verify_only_merged=True)
    except (ConsolidationError, MergeAttemptFailed) as exc:
        store.set_batch_fields(batch_id, {"orphan_merge_pending": None, "orphan_merge_error": str(exc)[:2000]})
        log_event("orphan_merge_failed", severity="ERROR", batch_id=batch_id, game_date=game_date,
                  items=sorted(manifest)[:200], error=str(exc))
        return False
    store.record_orphans_merged(batch_id, {"job_id": result.job_id, "pin": pin, "items": len(manifest),
                                           "rows": result.verified_rows, "at": now()}, result.job_id)
    log_event("orphans_merged", batch_id=batch_id, game_date=game_date, job_id=result.job_id,
              items=sorted(manifest)[:200], pin=pin, affected_rows=result.affected_rows,
              verified_rows=result.verified_rows)
    report.merged += [f"{table}/{i}" for i in sorted(manifest)]
    report.merge_jobs.append(result.job_id)
    return True
