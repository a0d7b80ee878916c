"""Which manifest a consolidation merges, fixed before any MERGE job exists: the recorded result's pin
after a verified MERGE, the pin of a MERGE that already ran (merge_record.py), else the current
attempt's, pinned now (its rows in the manifest table, batchline/adapters/manifests.py; the pin
document names them). A redelivery of an attempt therefore verifies and records what its job read."""

from __future__ import annotations

from dataclasses import dataclass

from batchline.adapters import manifests
from batchline.adapters.batch_store import BatchStore, now
from batchline.adapters.clients import Clients
from batchline.domain import ids
from batchline.domain.evidence import Inventory
from batchline.flows import merge_record as merge_recovery
from batchline.logs import log_event

LIST_CAP = 1000  # item lists kept on the batch document; each has its full count beside it (F3: 1 MiB)


def capped(items) -> list:
    return sorted(items)[:LIST_CAP]


@dataclass
class MergePlan:
    """What one consolidation merges: item -> write id, under which pin, generation and attempt; and
    the MERGE that already ran for it, if one did."""

    manifest: dict[str, str]
    pin: str | None
    generation: int
    attempt: int
    committed: merge_recovery.CommittedMerge | None


def plan_merge(clients: Clients, store: BatchStore, batch: dict, inv: Inventory, items: list[dict]) -> MergePlan:
    """The plan of this consolidation; `inv` is brought in line with the manifest it merges."""
    batch_id, merged = batch["batch_id"], batch.get("merge_result")
    attempt = int(batch.get("merge_attempt") or 0)
    generation = int(batch.get("consolidation_generation") or 0)
    if merged is not None:
        # A redelivery after the MERGE was verified: what was merged is its pin, whatever cleanup dropped.
        manifest = manifests.read(clients.bq, clients.settings, batch_id, [merged["pin"]])[merged["pin"]]
        inv.missing_writes = [i for i in inv.expected_completed if i not in manifest]
        inv.recovered = list(merged.get("recovered", []))
        inv.abandoned_writes = int(merged.get("abandoned_writes", 0))
        inv.staged_rows_total = int(merged.get("staged_rows_total", inv.staged_rows_total))
        return MergePlan(manifest, merged["pin"], generation, attempt, None)
    committed = merge_recovery.find_committed(clients.bq, store, batch)
    if committed is not None:
        # An earlier attempt's MERGE ran (or runs): record that job from the manifest it read, never a
        # second MERGE. Its result was lost, e.g. to a failed record or a dead letter.
        generation, attempt, pinned = committed.generation, committed.attempt, committed.pinned
        log_event("merge_found", batch_id=batch_id, job_id=committed.job_id, job_state=committed.state,
                  message="this batch's MERGE already ran; verifying and recording it instead of merging again")
    else:
        if not inv.writes:
            return MergePlan({}, None, generation, attempt, None)
        # Fixed before the job exists: a redelivery of this attempt waits for the same job, so it must
        # verify and record the manifest that job read, not a newer inventory.
        pinned = store.get_pin(batch_id, generation, attempt) or pin_manifest(
            clients, store, batch, inv, items, generation, attempt)
    manifest = manifests.read(clients.bq, clients.settings, batch_id, [pinned["pin"]])[pinned["pin"]]
    inv.recovered, inv.missing_writes = list(pinned["recovered"]), list(pinned["missing_writes"])
    inv.staged_rows_total, inv.abandoned_writes = int(pinned["staged_rows_total"]), int(pinned["abandoned_writes"])
    return MergePlan(manifest, pinned["pin"], generation, attempt, committed)


def pin_manifest(clients: Clients, store: BatchStore, batch: dict, inv: Inventory, items: list[dict],
                 generation: int, attempt: int) -> dict:
    """Write this attempt's manifest rows, then the pin document that names them (the first wins)."""
    batch_id, manifest = batch["batch_id"], inv.manifest()
    pin = ids.new_pin(generation, attempt)
    scheduled = batch.get("scheduled_items") or [i["item_id"] for i in items]
    manifests.write(clients.bq, clients.appender, clients.settings,
                    manifests.rows(batch_id, pin, manifest, inv.recovered, scheduled, now()))
    return store.pin_manifest(batch_id, generation, attempt, {
        "pin": pin, "merge_items": len(manifest), "scheduled_items": len(set(scheduled)),
        "staged_rows_total": inv.staged_rows_total, "abandoned_writes": inv.abandoned_writes,
        "recovered": capped(inv.recovered), "recovered_count": len(inv.recovered),
        "missing_writes": capped(inv.missing_writes), "missing_writes_count": len(inv.missing_writes)})
