"""Whether a batch may be done, without a query per completion and without a hot document (F3).

Deciding that no item is pending is a query over the batch's items. Run for every completion it costs
one query per item, and the Firestore emulator answers it by scanning the collection (250 ms at 10,000
items), so a batch would cost O(items^2). Instead each batch has a few progress shards
(`batches/{id}/progress/{n}`, one per SHARD_ITEMS items, an item's shard fixed by its id), each holding
how many of its items exist and how many terminal transitions were counted. A completion or a failure
counts one on its item's shard (an atomic increment) and reads that shard back; only when the shard
is full does it read all shards, and only when all are full does the caller run the exact query.

Counting is at-least-once (a redelivery counts again), so a shard can only be full early, which costs
an exact query, never a missed consolidation. A missing shard (a batch created before shards existed)
answers "may be done". Each shard takes at most a few writes per second at the end of a batch, spread
over ceil(items / SHARD_ITEMS) documents.
"""

from __future__ import annotations

import hashlib
import math

from google.api_core import exceptions as gexc
from google.cloud import firestore

PROGRESS = "progress"
SHARD_ITEMS = 50


def shard_count(expected_items: int) -> int:
    return max(1, math.ceil(expected_items / SHARD_ITEMS))


def shard_of(item_id: str, shards: int) -> int:
    """The shard an item counts on: stable across processes (not Python's salted hash)."""
    return int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big") % max(1, shards)


class Progress:
    def __init__(self, fs: firestore.Client, batch_ref) -> None:
        self.fs = fs
        self.batch_ref = batch_ref

    def _ref(self, n: int):
        return self.batch_ref.collection(PROGRESS).document(f"{n:04d}")

    def create(self, item_ids: list[str]) -> None:
        """The shards of a batch of these items; shards that already exist are kept (a resumed
        dispatch calls this again, and must not reset what was counted)."""
        shards = shard_count(len(item_ids))
        sizes = [0] * shards
        for item in item_ids:
            sizes[shard_of(item, shards)] += 1
        refs = [self._ref(n) for n in range(shards)]
        existing = {snap.reference.path for snap in self.fs.get_all(refs) if snap.exists}
        todo = [(ref, sizes[n]) for n, ref in enumerate(refs) if ref.path not in existing]
        for start in range(0, len(todo), 500):  # a write batch takes at most 500 writes
            wb = self.fs.batch()
            for ref, size in todo[start:start + 500]:
                wb.create(ref, {"items": size, "terminal": 0})
            wb.commit()

    def count_terminal(self, item_id: str, shards: int | None) -> bool:
        """Count one terminal transition of `item_id`; True when the batch may be done."""
        if not shards:
            return True
        ref = self._ref(shard_of(item_id, shards))
        try:
            ref.update({"terminal": firestore.Increment(1)})
        except gexc.NotFound:
            return True
        if not _full(ref.get()):
            return False
        return all(_full(snap) for snap in self.fs.get_all([self._ref(n) for n in range(shards)]))


def _full(snap) -> bool:
    if not snap.exists:
        return True
    doc = snap.to_dict() or {}
    return int(doc.get("terminal") or 0) >= int(doc.get("items") or 0)
