"""The two repairs an operator asks for, shared by the control requests and the dead-letter replay.

- `start_repair`: run some items of a date again as a new batch of just those items, exactly as the
  daily reconciliation re-dispatches a gap (`dispatch.start_batch(only_items=...)`). Their original
  batch is left as it ended (an item whose work was dead-lettered stays dead-lettered there) and each
  original item document records `replayed_in`, so its audit names the batch that merged it.
- `consolidate_again`: re-open a `consolidation_failed` batch (lifecycle.decide_reopen) and publish
  its consolidation request (claim.publish_claimed); the MERGE then runs from its kept staging table.
"""

from __future__ import annotations

import datetime as dt

from batchline.adapters.clients import Clients
from batchline.domain.messages import StartRequest
from batchline.domain.statuses import CONSOLIDATION_REQUESTED, REOPENED
from batchline.flows.consolidation_request import publish_claimed
from batchline.flows.dispatch import StartResult, start_batch
from batchline.logs import log_event


def start_repair(clients: Clients, game_date: dt.date, items_by_batch: dict[str, list[str]]) -> StartResult:
    """Start one batch of the given items of `game_date` and mark the originals `replayed_in` it.
    Raises BatchConflict while the date's batch is still active, InvalidMessage when none of the
    items is scheduled for the date any more."""
    items = sorted({i for its in items_by_batch.values() for i in its})
    # An operator asked for exactly these items (after a fix): repeat a repair the reconciliation
    # already tried, which it would otherwise refuse as the same gap persisting.
    result = start_batch(clients, StartRequest(game_date=game_date), only_items=items, repeat_repair=True)
    clients.batches.mark_replayed(items_by_batch, result.batch_id)
    log_event("repair_started", batch_id=result.batch_id, game_date=game_date, items=items[:200],
              from_batches=sorted(items_by_batch), expected_items=result.expected_items,
              not_scheduled=len(items) - result.expected_items)
    return result


def consolidate_again(clients: Clients, batch_id: str, claimant: str) -> tuple[bool, dict]:
    """(True, result) once the re-opened batch's consolidation request is published; (False, why)
    when the batch may not be consolidated again. Raises UnknownItem for an unknown batch. A retry by
    the same claimant finishes what its first attempt began (re-opened, not yet published)."""
    store = clients.batches
    result, batch = store.reopen(batch_id, claimant, auto=False)
    if result != REOPENED:
        mine = batch["status"] == CONSOLIDATION_REQUESTED and batch.get("consolidation_claimant") == claimant
        if not mine:
            return False, {"error": result, "batch_id": batch_id, "batch_status": batch["status"]}
        if batch.get("consolidation_message_id"):
            return True, {"batch_id": batch_id, "generation": batch.get("consolidation_generation"),
                          "consolidation_message_id": batch["consolidation_message_id"]}
    log_event("consolidation_reopened", batch_id=batch_id, by="operator", claimant=claimant,
              generation=batch.get("consolidation_generation"))
    message_id = publish_claimed(clients, batch_id, "manual")
    return True, {"batch_id": batch_id, "generation": batch.get("consolidation_generation"),
                  "consolidation_message_id": message_id}
