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
