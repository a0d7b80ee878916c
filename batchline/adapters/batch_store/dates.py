"""Writes of the date documents beyond a run's registration: the reconciliation's orphan-merge lease
(a start of the date waits while it is held, so no batch MERGE can race an orphan MERGE), and the marks
a repair leaves on the items it re-runs."""

from __future__ import annotations

import datetime as dt

from google.cloud import firestore

from batchline.adapters.batch_store.documents import Documents, now
from batchline.domain.runs import decide_orphan_lease


class DateWrites(Documents):
    def take_orphan_lease(self, game_date: dt.date, token: str, label: str) -> str | None:
        """Hold the date for orphan merges (decide_orphan_lease); None when taken, else why not."""
        ref = self.date_ref(game_date)

        @firestore.transactional
        def txn_fn(txn) -> str | None:
            snap = ref.get(transaction=txn)
            doc = (snap.to_dict() or {}) if snap.exists else {}
            active = doc.get("active_batch_id")
            a = self.batch_ref(active).get(transaction=txn) if active else None
            why, update = decide_orphan_lease(
                doc, a.get("status") if a and a.exists else None, token, label, game_date.isoformat(), now()
            )
            if update is not None:
                txn.set(ref, update, merge=True)
            return why

        return txn_fn(self.fs.transaction())

    def release_orphan_lease(self, game_date: dt.date, token: str) -> None:
        ref = self.date_ref(game_date)

        @firestore.transactional
        def txn_fn(txn) -> None:
            snap = ref.get(transaction=txn)
            if snap.exists and (snap.to_dict() or {}).get("orphan_merge_token") == token:
                txn.update(ref, {"orphan_merge_token": None, "orphan_merge_until": None})

        txn_fn(self.fs.transaction())

    def mark_replayed(self, items_by_batch: dict[str, list[str]], repair_batch_id: str) -> int:
        """Each original item a repair re-runs records `replayed_in` (not `updated_at`: that is progress
        of the original batch for the stall check); returns how many were marked."""
        wb, marked = self.fs.batch(), 0
        for batch_id, items in sorted(items_by_batch.items()):
            for item_id in items:
                if self.get_item(batch_id, item_id) is not None:
                    wb.update(self.item_ref(batch_id, item_id), {"replayed_in": repair_batch_id})
                    marked += 1
        if marked:
            wb.commit()
        return marked
