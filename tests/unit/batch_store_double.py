"""An in-memory batch store for unit tests of the flows (completion, consolidation claim, stall check).

Not a fake Firestore: it replaces the store's storage primitives only (documents.Documents: reads, the
compare-and-set on a batch document, the transaction on an item document), so every decision a flow
reaches through the store runs the REAL write methods of batchline/adapters/batch_store/ and the pure
decisions of batchline/domain/lifecycle.py on top of it. tests/stack/test_batch_store_contract.py runs
one scenario through this double and through the real store on the Firestore emulator and requires the
same answers, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass

from batchline.adapters.batch_store import BatchStore, ItemSnapshot, now
from batchline.adapters.clients import Clients
from batchline.domain import lifecycle as lc
from batchline.domain.errors import UnknownItem
from batchline.domain.evidence import Staged
from batchline.domain.statuses import PENDING, RUNNING
from batchline.layout import BATCHES, DATES, ITEMS
from batchline.settings import Settings


@dataclass(frozen=True)
class Ref:
    path: str
    id: str


class MemoryBatchStore(BatchStore):
    """BatchStore over a dict of documents (path -> fields); every write counted in `writes`."""

    def __init__(self) -> None:  # noqa: D107 - no Firestore client
        self.fs = None
        self.docs: dict[str, dict] = {}
        self.versions: dict[str, int] = {}
        self.writes = 0
        self.lock = threading.RLock()

    # -- storage primitives ----------------------------------------------------------------
    def batch_ref(self, batch_id: str) -> Ref:
        return Ref(f"{BATCHES}/{batch_id}", batch_id)

    def item_ref(self, batch_id: str, item_id: str) -> Ref:
        return Ref(f"{BATCHES}/{batch_id}/{ITEMS}/{item_id}", item_id)

    def date_ref(self, game_date) -> Ref:
        return Ref(f"{DATES}/{game_date.isoformat()}", game_date.isoformat())

    def _read(self, ref: Ref) -> dict | None:
        doc = self.docs.get(ref.path)
        return copy.deepcopy(doc) if doc is not None else None

    def _write(self, ref: Ref, update: dict) -> None:
        for key, value in update.items():
            if type(value).__module__.startswith("google."):
                # ArrayUnion, Increment, DELETE_FIELD...: Firestore applies them; a double that stored the
                # sentinel would let a test pass for the wrong reason
                raise NotImplementedError(f"the in-memory store does not apply {type(value).__name__} ({key})")
        doc = self.docs.setdefault(ref.path, {})
        for key, value in update.items():
            target, *path = key.split(".")
            if path:
                doc.setdefault(target, {})[".".join(path)] = value
            else:
                doc[key] = value
        self.versions[ref.path] = self.versions.get(ref.path, 0) + 1
        self.writes += 1

    def compare_and_set(self, ref, decide):
        with self.lock:
            doc = self._read(ref)
            if doc is None:
                raise UnknownItem(f"no batch {ref.id}")
            result, update = decide(doc)
            if update is not None:
                self._write(ref, {**update, "updated_at": now()})
            return result

    def item_transition(self, batch_id, item_id, decide, also=None):
        with self.lock:
            ref = self.item_ref(batch_id, item_id)
            doc = self._read(ref)
            if doc is None:
                raise UnknownItem(f"batch {batch_id} has no item {item_id}")
            result, update = decide(doc)
            if update is not None:
                self._write(ref, update)
            return result

    def counted_transition(self, batch, item_id, decide, item=None):
        """One transition (the exact pending check stands in for the progress shards)."""
        result = self.item_transition(batch["batch_id"], item_id, decide)
        return str(result), self.may_be_done(batch, item_id)

    def reject_claim(self, batch, item_id, claimed_write, action, reason, *, switch_to=None, failure_reason=None):
        return str(self.item_transition(batch["batch_id"], item_id, lambda doc: lc.decide_claim_rejected(
            doc, claimed_write=claimed_write, action=action, reason=reason, now=now(), switch_to=switch_to,
            failure_reason=failure_reason)))

    # -- reads -----------------------------------------------------------------------------
    def get_batch(self, batch_id: str) -> dict | None:
        return self._read(self.batch_ref(batch_id))

    def get_item(self, batch_id: str, item_id: str) -> dict | None:
        return self._read(self.item_ref(batch_id, item_id))

    def batch_and_item_snapshots(self, batch_id, item_id):
        ref = self.item_ref(batch_id, item_id)
        item = self._read(ref)
        return self.get_batch(batch_id), (ItemSnapshot(item, self.versions.get(ref.path)) if item else None)

    def items(self, batch_id: str) -> list[dict]:
        prefix = f"{BATCHES}/{batch_id}/{ITEMS}/"
        return [copy.deepcopy(d) for p, d in sorted(self.docs.items()) if p.startswith(prefix)]

    def items_with_status(self, batch_id: str, status: str) -> list[dict]:
        return [i for i in self.items(batch_id) if i["status"] == status]

    def any_pending(self, batch_id: str) -> bool:
        return bool(self.items_with_status(batch_id, PENDING))

    def may_be_done(self, batch: dict, item_id: str, count: int | None = None) -> bool:
        return not self.any_pending(batch["batch_id"])

    def batches_with_status(self, statuses) -> list[dict]:
        wanted = set(statuses)
        return [copy.deepcopy(d) for p, d in sorted(self.docs.items())
                if p.count("/") == 1 and p.startswith(f"{BATCHES}/") and d.get("status") in wanted]

    def set_batch_fields(self, batch_id: str, fields: dict) -> None:
        if "status" in fields:
            raise ValueError("status changes go through BatchStore.transition")
        with self.lock:
            self._write(self.batch_ref(batch_id), {**fields, "updated_at": now()})

    def mark_redispatched(self, batch_id, item_ids) -> None:
        with self.lock:
            for item_id in item_ids:
                ref = self.item_ref(batch_id, item_id)
                n = int((self._read(ref) or {}).get("redispatch_count") or 0) + 1
                self._write(ref, {"redispatched_at": now(), "updated_at": now(), "redispatch_count": n})

    def record_rejected(self, message_id, subscription, data, reason, *, source=None, body=None, body_bytes=None):
        with self.lock:
            self._write(Ref(f"rejected/{message_id}", message_id), {"reason": reason, "source": source})
        return message_id

    # -- seeding (what a start writes, without dispatching) ---------------------------------
    def seed(self, batch_id: str, game_date: str, items: dict[str, str], status: str = RUNNING,
             **fields) -> None:
        """A batch of `items` (item id -> game id), all pending, in `status`."""
        t = now()
        self.docs[self.batch_ref(batch_id).path] = {
            "batch_id": batch_id, "game_date": game_date, "status": status, "expected_items": len(items),
            "created_at": t, "updated_at": t, **fields}
        for item_id, game_id in items.items():
            self.docs[self.item_ref(batch_id, item_id).path] = {
                "item_id": item_id, "game_id": game_id, "status": PENDING, "updated_at": t}


class MemoryStaging:
    """The batch staging tables as a dict: batch id -> item -> write id -> StagedWrite."""

    def __init__(self) -> None:
        self.tables: dict[str, Staged] = {}
        self.dropped: list[str] = []

    def writes(self, batch_id: str) -> Staged:
        return copy.deepcopy(self.tables.get(batch_id, {}))

    def drop(self, batch_id: str) -> int:
        self.dropped.append(batch_id)
        return int(self.tables.pop(batch_id, None) is not None)


class RecordingClients(Clients):
    """Clients whose store and staging are in memory and whose publishes are recorded, not sent."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings or Settings(), store=MemoryBatchStore(), staging_tables=MemoryStaging())
        self.published: list[tuple[str, bytes, dict]] = []

    def publish(self, key: str, data: bytes, timeout_s: float = 30.0, **attributes: str) -> str:
        self.published.append((key, data, attributes))
        return f"msg-{len(self.published)}"

    def topics(self) -> list[str]:
        return [key for key, _, _ in self.published]
