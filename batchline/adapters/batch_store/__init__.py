"""The batch store: the ONE writer of batch state in Firestore (batch, item, date, shard and pin
documents; batchline/layout.py draws them), shaped so that no completion funnels through one hot
document (F3). Every decision it applies is a pure function of batchline.domain.lifecycle; the store
reads, decides and writes conditionally (a compare-and-set on one document, or a transaction)."""

from __future__ import annotations

from batchline.adapters.batch_store.batches import BatchWrites
from batchline.adapters.batch_store.dates import DateWrites
from batchline.adapters.batch_store.documents import ItemSnapshot, now
from batchline.adapters.batch_store.items import ItemWrites
from batchline.adapters.batch_store.merge_records import MergeRecords
from batchline.adapters.batch_store.rejected import RejectedMessages


class BatchStore(MergeRecords, BatchWrites, ItemWrites, DateWrites, RejectedMessages):
    """Batch state: reads (Documents) and every write, each module one kind of document."""


__all__ = ["BatchStore", "ItemSnapshot", "now"]
