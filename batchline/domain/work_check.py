"""Whether a work message names an item as batch state knows it: the worker checks before it works,
the coordinator before it records a dead-lettered message, with the same rule (a forged or stale
message that disagrees is refused, never worked or counted)."""

from __future__ import annotations

from batchline.domain.errors import InvalidMessage, UnknownBatch, UnknownItem
from batchline.domain.messages import WorkMessage


def check_work_message(batch: dict | None, item: dict | None, msg: WorkMessage, what: str = "work message") -> dict:
    """Returns the item document; raises UnknownItem (no such batch or item) or InvalidMessage (the
    message's game or date is not the one batch state recorded for the item)."""
    if batch is None:
        raise UnknownBatch(f"no batch {msg.batch_id}")
    if item is None:
        raise UnknownItem(f"batch {msg.batch_id} has no item {msg.item_id}")
    if item.get("game_id") != msg.game_id or batch.get("game_date") != msg.game_date.isoformat():
        raise InvalidMessage(f"{what} for {msg.item_id} disagrees with batch state "
                             f"(game {msg.game_id} vs {item.get('game_id')}, date {msg.game_date} vs "
                             f"{batch.get('game_date')})")
    return item
