"""A durable record of every dead-lettered work message, which any number of readers can count at once.

Reading the work dead-letter pull subscription is not that: a pull leases the messages it returns,
so two ledgers counting at the same time hide messages from each other (seen: 8 of 12 concurrent
ledgers reported a dead-lettered item as missing). The official Pub/Sub emulator cannot help either:
`seek` of a fresh private subscription to a snapshot of the dead-letter subscription delivers nothing
(probe: 5 unacked messages in the snapshot, 0 pulled after the seek), so a private copy per reader is
not possible locally.

So the coordinator's dead-letter push handler writes one document per dead-lettered message,

    batches/{batch_id}/dead_letters/{sha256(message_id)[:40]}   item_id, message_id, delivery_attempts, ...

before it marks the item failed (a redelivery of the same dead letter rewrites the same document).
Reads are plain queries: no lease, nothing a concurrent reader can disturb. Unlike the item's status,
the record survives a later completion of the item (a "recovered" item stays visible as dead-lettered).
"""

from __future__ import annotations

import datetime as dt
import hashlib

from google.cloud import firestore

from batchline import ids
from batchline.state import BATCHES

DEAD_LETTERS = "dead_letters"
#: The phrase the dead-letter handler puts in an item's `failure_reason` (older batches have only that).
DEAD_LETTER_REASON = "dead-lettered"


class DeadLetterLog:
    def __init__(self, client: firestore.Client):
        self.fs = client

    def _collection(self, batch_id: str):
        return self.fs.collection(BATCHES).document(ids.validate_batch_id(batch_id)).collection(DEAD_LETTERS)

    def record(self, batch_id: str, item_id: str, message_id: str, delivery_attempts: str | int) -> None:
        """Record one dead-lettered work message; idempotent per message id."""
        doc_id = hashlib.sha256(message_id.encode()).hexdigest()[:40]
        self._collection(batch_id).document(doc_id).set({
            "batch_id": batch_id,
            "item_id": ids.validate_item_id(item_id),
            "message_id": message_id[:200],
            "delivery_attempts": str(delivery_attempts),
            "recorded_at": dt.datetime.now(dt.UTC),
        })

    def items(self, batch_id: str) -> set[str]:
        """Items of the batch with at least one recorded dead letter."""
        return {d.get("item_id") for d in self._collection(batch_id).stream()}


def dead_lettered_in_item_state(items: list[dict]) -> set[str]:
    """Items whose document says the dead-letter handler marked them failed. The reason stays on the
    document when a late completion recovers the item, so recovered items are found here too."""
    return {i["item_id"] for i in items if DEAD_LETTER_REASON in str(i.get("failure_reason") or "")}
