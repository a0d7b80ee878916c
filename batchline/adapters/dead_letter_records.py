"""A durable record of every dead-lettered work message, which any number of readers can count at once.

Reading the work dead-letter pull subscription is not that: a pull leases the messages it returns,
so two ledgers counting at the same time hide messages from each other (seen: 8 of 12 concurrent
ledgers reported a dead-lettered item as missing). The official Pub/Sub emulator cannot help either:
`seek` of a fresh private subscription to a snapshot of the dead-letter subscription delivers nothing
(probe: 5 unacked messages in the snapshot, 0 pulled after the seek), so a private copy per reader is
not possible locally.

So the coordinator's dead-letter push handler writes one document per dead-lettered message,

    batches/{batch_id}/dead_letters/{sha256(message_id)[:40]}   item_id, message_id, delivery_attempts,
        attributes (Pub/Sub's CloudPubSubDeadLetter* ones), publish_time, payload, last_error, recorded_at

before it marks the item failed (a redelivery of the same dead letter rewrites the same document).
Reads are plain queries: no lease, nothing a concurrent reader can disturb. Unlike the item's status,
the record survives a later completion of the item (a "recovered" item stays visible as dead-lettered).
`batchline dlq list --batch B` reads the work dead letters from here too (`listed`), for the same
reason and because a pull waits for its deadline on an empty subscription: a replayed one (its item
names the repair batch, `replayed_in`) is left out unless asked for.
"""

from __future__ import annotations

import datetime as dt

from google.cloud import firestore

from batchline.domain import ids
from batchline.layout import BATCHES, DEAD_LETTERS

DEAD_LETTER_ATTRIBUTE_PREFIX = "CloudPubSubDeadLetter"
#: The phrase the dead-letter handler puts in an item's `failure_reason` (older batches have only that).
DEAD_LETTER_REASON = "dead-lettered"


class DeadLetterLog:
    def __init__(self, client: firestore.Client):
        self.fs = client

    def _collection(self, batch_id: str):
        return self.fs.collection(BATCHES).document(ids.validate_batch_id(batch_id)).collection(DEAD_LETTERS)

    def record(self, batch_id: str, item_id: str, message_id: str, delivery_attempts: str | int, *,
               envelope=None, payload: dict | None = None, last_error: dict | None = None) -> None:
        """Record one dead-lettered work message; idempotent per message id. `envelope` (the push
        delivery) gives Pub/Sub's dead-letter attributes and publish time, `payload` the work message."""
        doc_id = ids.hashed_doc_id(message_id, ids.MESSAGE_DOC_ID_HEX)
        message = getattr(envelope, "message", None)
        attributes = {k[:256]: str(v)[:1024] for k, v in list((message.attributes if message else {}).items())[:20]
                      if k.startswith(DEAD_LETTER_ATTRIBUTE_PREFIX)}
        publish_time = (message.model_extra or {}).get("publishTime") if message else None
        self._collection(batch_id).document(doc_id).set({
            "batch_id": batch_id,
            "item_id": ids.validate_item_id(item_id),
            "message_id": message_id[:200],
            "delivery_attempts": str(delivery_attempts),
            "attributes": attributes,
            "publish_time": str(publish_time)[:64] if publish_time else None,
            "payload": payload,
            "last_error": last_error,
            "recorded_at": dt.datetime.now(dt.UTC),
        })

    def records(self, batch_id: str) -> list[dict]:
        return [d.to_dict() for d in self._collection(batch_id).stream()]

    def items(self, batch_id: str) -> set[str]:
        """Items of the batch with at least one recorded dead letter."""
        return {d.get("item_id") for d in self.records(batch_id)}


def listed(batch_id: str, records: list[dict], replayed_in: dict[str, str | None], *,
           include_replayed: bool) -> list[dict]:
    """A batch's work dead-letter records in the shape `dlq list` prints (replay.describe's, plus the last
    error and the repair batch that replayed it); `replayed_in` maps item -> repair batch or None."""
    out = []
    for r in sorted(records, key=lambda r: (str(r.get("item_id")), str(r.get("message_id")))):
        replayed = replayed_in.get(r.get("item_id"))
        if replayed and not include_replayed:
            continue
        attributes = r.get("attributes") or {f"{DEAD_LETTER_ATTRIBUTE_PREFIX}SourceDeliveryCount":
                                              r.get("delivery_attempts")}
        out.append({"source": "work", "message_id": r.get("message_id"), "publish_time": r.get("publish_time"),
                    "attributes": attributes, "batch_id": batch_id, "item_id": r.get("item_id"),
                    "payload": r.get("payload"), "payload_error": None, "last_error": r.get("last_error"),
                    "replayed_in": replayed, "recorded_at": r.get("recorded_at"), "read_from": "record"})
    return out


def dead_lettered_in_item_state(items: list[dict]) -> set[str]:
    """Items whose document says the dead-letter handler marked them failed. The reason stays on the
    document when a late completion recovers the item, so recovered items are found here too."""
    return {i["item_id"] for i in items if DEAD_LETTER_REASON in str(i.get("failure_reason") or "")}
