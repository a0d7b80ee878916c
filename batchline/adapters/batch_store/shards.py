"""The progress shards of a batch in Firestore (batches/{id}/progress/{n}): which document counts an
item, the increments written with an item's own transition, and reading them all. Which shard an item
counts on, and each shard's size, is pure (batchline/domain/progress.py)."""

from __future__ import annotations

from google.cloud import firestore

from batchline.domain.progress import shard_of
from batchline.layout import PROGRESS


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
