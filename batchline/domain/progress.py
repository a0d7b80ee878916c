"""Whether a batch may be done, without a query per completion and without a hot document (F3).

Deciding that no item is pending is a query over the batch's items. Run for every completion it costs
one query per item, and the Firestore emulator answers it by scanning the collection (250 ms at 10,000
items), so a batch would cost O(items^2). Instead each batch has progress shards
(`batches/{id}/progress/{n}`, one per SHARD_ITEMS items, an item's shard fixed by its id) counting the
items that reached a terminal state. The count is written in the same commit as the item's own
transition (so it is exactly once: a redelivery finds the item terminal and writes nothing), and the
commit returns the shard's new count, so no read is needed. The batch document records each shard's
size (`progress_shard_items`). Only when a shard is full are all shards read, and only when all are
full does the caller run the exact query. A batch without shards (created before they existed) always
answers "may be done". Each shard takes at most SHARD_ITEMS writes over a batch's life.
"""

from __future__ import annotations

import hashlib
import math

from google.cloud import firestore

PROGRESS = "progress"
SHARD_ITEMS = 50


def shard_count(expected_items: int) -> int:
    return max(1, math.ceil(expected_items / SHARD_ITEMS))


def shard_of(item_id: str, shards: int) -> int:
    """The shard an item counts on: stable across processes (not Python's salted hash)."""
    return int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big") % max(1, shards)


def shard_sizes(item_ids: list[str]) -> list[int]:
    shards = shard_count(len(item_ids))
    sizes = [0] * shards
    for item in item_ids:
        sizes[shard_of(item, shards)] += 1
    return sizes


def shard_ref(batch_ref, n: int):
    return batch_ref.collection(PROGRESS).document(f"{n:04d}")


def counted(batch: dict, item_id: str, batch_ref) -> tuple[object, int] | None:
    """(shard document, its size) of the shard `item_id` counts on, or None for a batch without shards."""
    sizes = batch.get("progress_shard_items") or []
    if not sizes:
        return None
    n = shard_of(item_id, len(sizes))
    return shard_ref(batch_ref, n), int(sizes[n])


INCREMENT = {"terminal": firestore.Increment(1)}
DECREMENT = {"terminal": firestore.Increment(-1)}  # an item back to pending (a rejected claim)


def all_full(fs: firestore.Client, batch: dict, batch_ref) -> bool:
    """Whether every shard counted all of its items (one read of all shards)."""
    sizes = batch.get("progress_shard_items") or []
    if not sizes:
        return True
    snaps = fs.get_all([shard_ref(batch_ref, n) for n in range(len(sizes))])
    counts = {snap.reference.id: int((snap.to_dict() or {}).get("terminal") or 0) for snap in snaps if snap.exists}
    return all(counts.get(f"{n:04d}", 0) >= size for n, size in enumerate(sizes))


def total_counted(fs: firestore.Client, batch: dict, batch_ref) -> int | None:
    """Items counted terminal so far (a progress display), or None for a batch without shards."""
    sizes = batch.get("progress_shard_items") or []
    if not sizes:
        return None
    snaps = fs.get_all([shard_ref(batch_ref, n) for n in range(len(sizes))])
    return sum(int((snap.to_dict() or {}).get("terminal") or 0) for snap in snaps if snap.exists)
