"""Reading batch state, and the two guarded writes every writer builds on: a compare-and-set on one
document (no lock: the burst of callers at the end of a batch cannot deadlock on the batch document)
and a transaction on one item document (items are contended only by their own redeliveries)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from batchline.domain import ids
from batchline.domain.errors import ContentionError, UnknownBatch, UnknownItem
from batchline.domain.lifecycle import Decision, R
from batchline.domain.statuses import PENDING
from batchline.layout import BATCHES, DATES, ITEMS, MANIFESTS

# A lost compare-and-set is retried after a short jittered pause (the winner's write is visible by
# then), for a few seconds at most so a push handler still answers within its ack deadline.
_CAS_RETRY = retry.Retry(
    predicate=retry.if_exception_type(gexc.FailedPrecondition), initial=0.01, maximum=0.5, multiplier=2.0, timeout=10.0
)


@dataclass(frozen=True)
class ItemSnapshot:
    """An item document as read, with the update time a compare-and-set write is conditional on."""

    data: dict
    update_time: Any


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Documents:
    def __init__(self, client: firestore.Client):
        self.fs = client

    # -- references ---------------------------------------------------------------------------
    def batch_ref(self, batch_id: str):
        return self.fs.collection(BATCHES).document(batch_id)

    def item_ref(self, batch_id: str, item_id: str):
        return self.batch_ref(batch_id).collection(ITEMS).document(item_id)

    def date_ref(self, game_date: dt.date):
        return self.fs.collection(DATES).document(game_date.isoformat())

    # -- reading ------------------------------------------------------------------------------
    def get_batch(self, batch_id: str) -> dict | None:
        snap = self.batch_ref(batch_id).get()
        return snap.to_dict() if snap.exists else None

    def get_item(self, batch_id: str, item_id: str) -> dict | None:
        snap = self.item_ref(batch_id, item_id).get()
        return snap.to_dict() if snap.exists else None

    def get_batch_and_item(self, batch_id: str, item_id: str) -> tuple[dict | None, dict | None]:
        """Both documents in one round trip (a worker and a completion need both for every item)."""
        batch, item = self.batch_and_item_snapshots(batch_id, item_id)
        return batch, (item.data if item else None)

    def batch_and_item_snapshots(self, batch_id: str, item_id: str) -> tuple[dict | None, ItemSnapshot | None]:
        """The batch document and the item document with its update time, in one round trip."""
        batch_ref, item_ref = self.batch_ref(batch_id), self.item_ref(batch_id, item_id)
        found = {snap.reference.path: snap for snap in self.fs.get_all([batch_ref, item_ref]) if snap.exists}
        batch, item = found.get(batch_ref.path), found.get(item_ref.path)
        return (batch.to_dict() if batch else None, ItemSnapshot(item.to_dict(), item.update_time) if item else None)

    def items_by_key(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        """The item documents of (batch id, item id) pairs that exist, in one round trip."""
        if not keys:
            return {}
        snaps = self.fs.get_all([self.item_ref(b, i) for b, i in keys])
        return {(s.reference.parent.parent.id, s.id): s.to_dict() or {} for s in snaps if s.exists}

    def items(self, batch_id: str) -> list[dict]:
        return [s.to_dict() for s in self.batch_ref(batch_id).collection(ITEMS).stream()]

    def items_with_status(self, batch_id: str, status: str) -> list[dict]:
        q = self.batch_ref(batch_id).collection(ITEMS).where(filter=FieldFilter("status", "==", status))
        return [s.to_dict() for s in q.stream()]

    def get_pin(self, batch_id: str, generation: int, attempt: int) -> dict | None:
        """The pinned manifest document of one MERGE attempt, None before it is pinned."""
        label = ids.merge_attempt_label(generation, attempt)
        snap = self.batch_ref(batch_id).collection(MANIFESTS).document(label).get()
        return snap.to_dict() if snap.exists else None

    def pinned_manifests(self, batch_id: str) -> dict[tuple[int, int], dict]:
        """Every MERGE attempt's pinned manifest of the batch: (generation, attempt) -> the document."""
        out = {}
        for snap in self.batch_ref(batch_id).collection(MANIFESTS).stream():
            gen, sep, att = snap.id.removeprefix("g").partition("_a")
            if sep and gen.isdigit() and att.isdigit():
                out[(int(gen), int(att))] = snap.to_dict() or {}
        return out

    def any_pending(self, batch_id: str) -> bool:
        q = self.batch_ref(batch_id).collection(ITEMS).where(filter=FieldFilter("status", "==", PENDING)).limit(1)
        return any(True for _ in q.stream())

    def count_items(self, batch_id: str, status: str) -> int:
        """A server-side count (aggregation query): cheap enough to poll for a progress bar."""
        q = self.batch_ref(batch_id).collection(ITEMS).where(filter=FieldFilter("status", "==", status))
        return int(q.count().get()[0][0].value)

    def batches_with_status(self, statuses: Iterable[str]) -> list[dict]:
        q = self.fs.collection(BATCHES).where(filter=FieldFilter("status", "in", list(statuses)))
        return [s.to_dict() for s in q.stream()]

    def active_batch_of(self, game_date: dt.date) -> str | None:
        snap = self.date_ref(game_date).get()
        return snap.get("active_batch_id") if snap.exists else None

    # -- the batch document: compare-and-set -------------------------------------------------
    def compare_and_set(self, ref, decide: Callable[[dict], Decision[R]]) -> R:
        """Read, decide, and write only if nobody wrote in between (an update-time precondition).

        For the one-shot transitions on the batch document (claim, lease, status): unlike a
        transaction it takes no lock, so the burst of callers at the end of a batch cannot deadlock
        each other on it; a loser backs off briefly, re-reads and sees the winner's write."""

        def attempt() -> R:
            snap = ref.get()
            if not snap.exists:
                raise UnknownBatch(f"no batch {ref.id}")
            result, update = decide(snap.to_dict())
            if update is not None:
                ref.update(
                    {**update, "updated_at": now()}, option=self.fs.write_option(last_update_time=snap.update_time)
                )
            return result

        try:
            return _CAS_RETRY(attempt)()
        except gexc.RetryError as exc:
            raise ContentionError(f"{ref.path}: still contended after {_CAS_RETRY.timeout} s") from exc

    # -- item transitions ---------------------------------------------------------------------
    def item_transition(
        self,
        batch_id: str,
        item_id: str,
        decide: Callable[[dict], Decision[R]],
        also: Callable[[object], None] | None = None,
    ) -> R:
        """One transaction on one item document: read it, let `decide` return (result, fields to
        update or None), write. Items are never contended by more than their own redeliveries.
        `updated_at` is progress for the stall check, so each decision sets it or not. `also(txn)` adds
        writes to the same commit when the item is written."""
        ref = self.item_ref(batch_id, item_id)

        @firestore.transactional
        def txn_fn(txn) -> R:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                raise UnknownItem(f"batch {batch_id} has no item {item_id}")
            result, update = decide(snap.to_dict())
            if update is not None:
                txn.update(ref, update)
                if also is not None:
                    also(txn)
            return result

        return txn_fn(self.fs.transaction())
