"""Batch state in Firestore, shaped so that no completion funnels through one hot document (F3).

    batches/{batch_id}                  status, expected count, consolidation record, counts
    batches/{batch_id}/items/{item_id}  one document per work item: status, staging table, rows
    dates/{game_date}                   the active batch of a date (409 on a second start)
    rejected_messages/{message_id}      dead-lettered messages that could not be attributed to an item

A completion touches only its own item document (a transaction on it makes a redelivery a no-op), and
"is the batch done?" is answered by asking whether any item is still pending, not by a counter. The
batch document is written a handful of times per batch: dispatch, the consolidation claim, the lease
and the result; the claim and the lease are compare-and-set writes, never locks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from batchline.domain import lifecycle as lc
from batchline.domain import progress
from batchline.domain.errors import BatchConflict, ContentionError, RepairAlreadyAttempted, UnknownItem
from batchline.domain.lifecycle import (  # noqa: F401 - the statuses are part of this module's interface
    ACTIVE_STATUSES,
    COMPLETED,
    CONSOLIDATED,
    CONSOLIDATING,
    CONSOLIDATION_FAILED,
    CONSOLIDATION_REQUESTED,
    DISPATCH_FAILED,
    DISPATCHING,
    FAILED,
    OPEN_STATUSES,
    PENDING,
    RUNNING,
    SUPERSEDED,
    TERMINAL_STATUSES,
)

BATCHES = "batches"
ITEMS = "items"
MANIFESTS = "manifests"  # batches/{id}/manifests/g<generation>_a<attempt>: a MERGE attempt's pinned manifest
DATES = "dates"
REJECTED = "rejected_messages"

_WRITE_BATCH = 400  # below Firestore's 500 writes per commit
# A lost compare-and-set is retried after a short jittered pause (the winner's write is visible by
# then), for a few seconds at most so a push handler still answers within its ack deadline.
_CAS_RETRY = retry.Retry(predicate=retry.if_exception_type(gexc.FailedPrecondition), initial=0.01,
                         maximum=0.5, multiplier=2.0, timeout=10.0)


@dataclass(frozen=True)
class ItemSnapshot:
    """An item document as read, with the update time a compare-and-set write is conditional on."""

    data: dict
    update_time: Any


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# The reconciliation merges orphaned staged rows of a date under this lease on the date document;
# a start of the date waits (409) while it is held, so no batch MERGE can race an orphan MERGE.
ORPHAN_LEASE = dt.timedelta(minutes=10)
MERGING_ORPHANS = lc.MERGING_ORPHANS


@dataclass(frozen=True)
class Item:
    item_id: str
    game_id: str


class BatchStore:
    def __init__(self, client: firestore.Client):
        self.fs = client

    # -- references ---------------------------------------------------------------------------
    def batch_ref(self, batch_id: str):
        return self.fs.collection(BATCHES).document(batch_id)

    def item_ref(self, batch_id: str, item_id: str):
        return self.batch_ref(batch_id).collection(ITEMS).document(item_id)

    def date_ref(self, game_date: dt.date):
        return self.fs.collection(DATES).document(game_date.isoformat())

    # -- creating a batch ---------------------------------------------------------------------
    def create_batch(self, batch_id: str, game_date: dt.date, items: list[Item], *, force: bool,
                     faults: str | None, dispatch_token: str, only_items: list[str] | None = None,
                     scheduled_items: list[str] | None = None, repeat_repair: bool = False) -> str | None:
        """Register a new batch run as the date's active one; returns the batch it supersedes.

        The date document and the batch document change in one transaction, so two concurrent
        starts for a date cannot both win. The batch is born holding a dispatch lease for its
        starter. Item documents are written before any work message is published, so a completion
        can never arrive for an item the state does not know. A batch that runs only some items of
        the date (`only_items`, a repair) records the date's whole schedule (`scheduled_items`): its
        MERGE deactivates rows of players no longer scheduled, never those it did not run.

        Repairs are idempotent per gap: the date document accumulates the items repaired since the
        date's last full run (which resets it), in this same transaction, and a repair whose items were
        all repaired already raises RepairAlreadyAttempted unless `repeat_repair`. A start also waits
        (BatchConflict) while the reconciliation holds the date's orphan-merge lease, and a repair is
        refused while the date's newest run failed consolidation (lifecycle.repair_blocked)."""
        date_ref = self.date_ref(game_date)
        batch_ref = self.batch_ref(batch_id)

        @firestore.transactional
        def claim_date(txn) -> str | None:
            snap = date_ref.get(transaction=txn)
            date_doc = (snap.to_dict() or {}) if snap.exists else {}
            previous = date_doc.get("active_batch_id")
            superseded = None
            repair = only_items is not None
            if lc.orphan_merge_held(date_doc, now()):
                raise BatchConflict(str(date_doc.get("orphan_merge_batch_id") or previous), MERGING_ORPHANS,
                                    repair=repair)
            if previous:
                prev_snap = self.batch_ref(previous).get(transaction=txn)
                prev_status = prev_snap.get("status") if prev_snap.exists else None
                blocked = lc.repair_blocked(previous, prev_status, game_date.isoformat()) if repair else None
                if blocked:
                    raise BatchConflict(previous, prev_status, repair=True, reason=blocked)
                if prev_status in ACTIVE_STATUSES:
                    # Even a forced re-run waits for a consolidation under way: superseding it
                    # mid-MERGE could land the old batch's rows after the new one's.
                    if not force or prev_status in (CONSOLIDATION_REQUESTED, CONSOLIDATING):
                        raise BatchConflict(previous, prev_status, repair=repair)
                    txn.update(self.batch_ref(previous), {"status": SUPERSEDED, "superseded_by": batch_id,
                                                          "updated_at": now()})
                    superseded = previous
            date_update = {"active_batch_id": batch_id, "updated_at": now()}
            if only_items is not None:
                repaired_by, record = lc.decide_repair(date_doc, only_items, batch_id, repeat=repeat_repair)
                if record is None:
                    raise RepairAlreadyAttempted(str(repaired_by), sorted(only_items))
                date_update.update(record)
            txn.create(batch_ref, {
                "batch_id": batch_id,
                "game_date": game_date.isoformat(),
                "status": DISPATCHING,
                "expected_items": len(items),
                "progress_shard_items": progress.shard_sizes([i.item_id for i in items]),
                "force": force,
                "faults": faults,
                "dispatch_token": dispatch_token,
                "dispatch_lease_until": now() + lc.DISPATCH_LEASE,
                "only_items": only_items,
                "scheduled_items": scheduled_items,
                "created_at": now(),
                "updated_at": now(),
            })
            txn.set(date_ref, date_update)  # a full run starts the date's repair record afresh
            return superseded

        superseded = claim_date(self.fs.transaction())
        self.create_items(batch_id, items)
        return superseded

    def create_items(self, batch_id: str, items: list[Item]) -> None:
        """Item documents in pending state; those that already exist are left as they are (a resumed
        dispatch re-creates only what a crashed start did not get to)."""
        existing = {s.id for s in self.batch_ref(batch_id).collection(ITEMS).select([]).stream()}
        todo = [i for i in items if i.item_id not in existing]
        for chunk_start in range(0, len(todo), _WRITE_BATCH):
            wb = self.fs.batch()
            for item in todo[chunk_start:chunk_start + _WRITE_BATCH]:
                wb.create(self.item_ref(batch_id, item.item_id), {
                    "item_id": item.item_id,
                    "game_id": item.game_id,
                    "status": PENDING,
                    "staging_table": None,
                    "write_id": None,
                    "row_count": None,
                    "created_at": now(),
                    "updated_at": now(),
                })
            wb.commit()

    def take_dispatch(self, batch_id: str, token: str, dead_holder: str | None = None) -> bool:
        """Take or renew the dispatch lease (see lifecycle.decide_dispatch_lease)."""
        return bool(self._compare_and_set(self.batch_ref(batch_id),
                                          lambda b: lc.decide_dispatch_lease(b, token, now(), dead_holder)))

    def mark_running(self, batch_id: str, dispatch_token: str) -> bool:
        """Dispatching -> running, unless a consolidation claim already moved the batch on."""
        return bool(self._compare_and_set(self.batch_ref(batch_id),
                                          lambda b: lc.decide_mark_running(b, dispatch_token, now())))

    def set_batch_fields(self, batch_id: str, fields: dict) -> None:
        """Fields that do not change the status (status changes go through `transition`)."""
        if "status" in fields:
            raise ValueError("status changes go through BatchStore.transition")
        self.batch_ref(batch_id).update({**fields, "updated_at": now()})

    def transition(self, batch_id: str, allowed_from: Iterable[str], fields: dict,
                   lease_token: str | None = None) -> bool:
        """Set fields (a new status among them) only if the batch is in one of `allowed_from` (and, if
        given, its consolidation lease is still held by `lease_token`); False when another writer
        moved it on first."""
        return bool(self._compare_and_set(self.batch_ref(batch_id),
                                          lambda b: lc.decide_transition(b, allowed_from, fields, lease_token)))

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
        return (batch.to_dict() if batch else None,
                ItemSnapshot(item.to_dict(), item.update_time) if item else None)

    def items(self, batch_id: str) -> list[dict]:
        return [s.to_dict() for s in self.batch_ref(batch_id).collection(ITEMS).stream()]

    def items_with_status(self, batch_id: str, status: str) -> list[dict]:
        q = self.batch_ref(batch_id).collection(ITEMS).where(filter=FieldFilter("status", "==", status))
        return [s.to_dict() for s in q.stream()]

    def pin_manifest(self, batch_id: str, generation: int, attempt: int, pinned: dict) -> dict:
        """The manifest a MERGE attempt runs with, fixed before its job is submitted: the first writer
        wins and every later delivery of the same attempt gets the same one back, so the job a
        redelivery waits for and the manifest it verifies and records are always the same (an
        inventory taken again could name a write the job never read). `pinned` names the pin's rows in
        the manifest table (batchline/adapters/manifests.py), written before, and their counts: fixed-size."""
        ref = self.batch_ref(batch_id).collection(MANIFESTS).document(f"g{int(generation)}_a{int(attempt)}")
        try:
            ref.create({**pinned, "pinned_at": now()})
            return pinned
        except gexc.Conflict:
            return ref.get().to_dict() or {}

    def get_pin(self, batch_id: str, generation: int, attempt: int) -> dict | None:
        """The pinned manifest document of one MERGE attempt, None before it is pinned."""
        snap = self.batch_ref(batch_id).collection(MANIFESTS).document(f"g{int(generation)}_a{int(attempt)}").get()
        return snap.to_dict() if snap.exists else None

    def pinned_manifests(self, batch_id: str) -> dict[tuple[int, int], dict]:
        """Every MERGE attempt's pinned manifest of the batch: (generation, attempt) -> the document."""
        out = {}
        for snap in self.batch_ref(batch_id).collection(MANIFESTS).stream():
            gen, sep, att = snap.id.removeprefix("g").partition("_a")
            if sep and gen.isdigit() and att.isdigit():
                out[(int(gen), int(att))] = snap.to_dict() or {}
        return out

    def count_fault_attempt(self, batch_id: str, fault: str) -> int:
        """One more attempt at the step an injected fault (batchline/domain/faults.py) may fail, counted on the
        batch document across deliveries; returns the count. Used only where faults are allowed."""
        wb = self.fs.batch()
        wb.update(self.batch_ref(batch_id), {f"fault_attempts.{fault}": firestore.Increment(1)})
        return int(wb.commit()[0].transform_results[0].integer_value)

    def may_be_done(self, batch: dict, item_id: str, count: int | None = None) -> bool:
        """Whether the batch may have no pending item left, from its progress shards (progress.py):
        `count` is the item's shard count as a commit returned it, else it is read."""
        ref = self.batch_ref(batch["batch_id"])
        shard = progress.counted(batch, item_id, ref)
        if shard is None:
            return True
        if count is None:
            snap = shard[0].get()
            count = int((snap.to_dict() or {}).get("terminal") or 0) if snap.exists else 0
        return count >= shard[1] and progress.all_full(self.fs, batch, ref)

    def terminal_count(self, batch: dict) -> int:
        """Items that reached a terminal state, for a progress display: the progress shards (one small
        read), or two count queries for a batch without them."""
        counted = progress.total_counted(self.fs, batch, self.batch_ref(batch["batch_id"]))
        if counted is not None:
            return counted
        return sum(self.count_items(batch["batch_id"], s) for s in (COMPLETED, FAILED))

    def any_pending(self, batch_id: str) -> bool:
        q = (self.batch_ref(batch_id).collection(ITEMS)
             .where(filter=FieldFilter("status", "==", PENDING)).limit(1))
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

    # -- item transitions ---------------------------------------------------------------------
    def _item_transition(self, batch_id: str, item_id: str, decide: Callable[[dict], tuple[object, dict | None]],
                         also: Callable[[object], None] | None = None) -> object:
        """One transaction on one item document: read it, let `decide` return (result, fields to
        update or None), write. Items are never contended by more than their own redeliveries.
        `updated_at` is progress for the stall check, so each decision sets it or not. `also(txn)` adds
        writes to the same commit when the item is written."""
        ref = self.item_ref(batch_id, item_id)

        @firestore.transactional
        def txn_fn(txn) -> object:
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

    def count_attempt(self, batch_id: str, item_id: str) -> int:
        """Count one more work attempt on the item and return the count. Used where the push
        envelope carries no deliveryAttempt (the emulator never sends it); also operator data.
        (It does not touch `updated_at`: an attempt is not progress for the stall check.)"""

        def decide(item: dict) -> tuple[int, dict]:
            n = int(item.get("attempts") or 0) + 1
            return n, {"attempts": n, "last_attempt_at": now()}

        return int(self._item_transition(batch_id, item_id, decide))  # type: ignore[arg-type]

    def record_completion(self, batch_id: str, item_id: str, staging_table: str, row_count: int,
                          attempt: int, write_id: str, batch: dict | None = None,
                          item: ItemSnapshot | None = None) -> str:
        """Mark an item completed; idempotent. Returns 'recorded', 'duplicate' or 'late'."""
        return self.record_completion_counted(batch_id, item_id, staging_table, row_count, attempt, write_id,
                                              batch, item)[0]

    def record_completion_counted(self, batch_id: str, item_id: str, staging_table: str, row_count: int,
                                  attempt: int, write_id: str, batch: dict | None = None,
                                  item: ItemSnapshot | None = None) -> tuple[str, bool]:
        """Mark an item completed; idempotent. Returns ('recorded' | 'duplicate' | 'late', whether the
        batch may now be done).

        'late' means the batch already moved past consolidation: the item is recorded, and the caller
        reports it loudly, because its write was not part of the MERGE. The recorded write id is the
        item's entry in the batch's manifest. `batch` and `item` are the caller's reads (one round trip
        for both); the item is then written only if nobody wrote it since, else by a transaction."""
        # Read outside the transaction: a transactional read would lock the batch document and make
        # it the hot document F3 is about. "late" is advisory; consolidation also merges a staged
        # write whose completion never arrived.
        if batch is None:
            batch = self.get_batch(batch_id) or {"batch_id": batch_id}
        late = batch.get("status") is not None and batch["status"] not in OPEN_STATUSES

        def decide(doc: dict) -> tuple[object, dict | None]:
            return lc.decide_completion(doc, late=late, staging_table=staging_table, row_count=row_count,
                                        attempt=attempt, write_id=write_id, now=now())

        return self._counted_transition(batch, item_id, decide, item)

    def _counted_transition(self, batch: dict, item_id: str, decide: Callable[[dict], tuple[object, dict | None]],
                            item: ItemSnapshot | None = None) -> tuple[str, bool]:
        """An item's transition and its count on the batch's progress shard, in one commit: conditional
        on the caller's read of the item when given (one round trip), else (or when that race is lost)
        in a transaction. Returns (result, whether the batch may now be done)."""
        batch_id = batch["batch_id"]
        ref = self.item_ref(batch_id, item_id)
        shard = progress.counted(batch, item_id, self.batch_ref(batch_id))
        if item is not None:
            result, update = decide(item.data)
            if update is None:
                return str(result), self.may_be_done(batch, item_id)
            wb = self.fs.batch()
            wb.update(ref, update, option=self.fs.write_option(last_update_time=item.update_time))
            if shard is not None:
                wb.set(shard[0], progress.INCREMENT, merge=True)
            try:
                written = wb.commit()
            except gexc.FailedPrecondition:
                pass  # somebody wrote the item since the caller read it: decide again, in a transaction
            else:
                count = written[1].transform_results[0].integer_value if shard is not None else None
                return str(result), self.may_be_done(batch, item_id, count)

        result = self._item_transition(batch_id, item_id, decide, None if shard is None else (
            lambda txn: txn.set(shard[0], progress.INCREMENT, merge=True)))
        return str(result), self.may_be_done(batch, item_id)

    def record_failure(self, batch_id: str, item_id: str, reason: str, *, dead_lettered: bool = False) -> str:
        """Mark an item failed (dead-lettered or given up on); never overrides a completion.
        Returns 'recorded', 'already_completed' or 'duplicate'."""
        return self.record_failure_counted(batch_id, item_id, reason, dead_lettered=dead_lettered)[0]

    def record_failure_counted(self, batch_id: str, item_id: str, reason: str, *,
                               dead_lettered: bool = False) -> tuple[str, bool]:
        """record_failure, and whether the batch may now be done (progress.py)."""
        batch = self.get_batch(batch_id) or {"batch_id": batch_id}
        return self._counted_transition(batch, item_id, lambda item: lc.decide_failure(
            item, reason, now(), dead_lettered=dead_lettered))

    def reject_claim(self, batch: dict, item_id: str, claimed_write: str, action: str, reason: str, *,
                     switch_to: tuple[str, int] | None = None, failure_reason: str | None = None) -> str:
        """Apply a verdict of the bulk verification to one item's claim, in one transaction (lifecycle.
        decide_claim_rejected); an item sent back to pending is counted off its progress shard in the
        same commit, so the shards stay exact. Returns the action applied, or 'stale'."""
        shard = progress.counted(batch, item_id, self.batch_ref(batch["batch_id"]))
        ref = self.item_ref(batch["batch_id"], item_id)

        @firestore.transactional
        def txn_fn(txn) -> str:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                raise UnknownItem(f"batch {batch['batch_id']} has no item {item_id}")
            result, update = lc.decide_claim_rejected(snap.to_dict(), claimed_write=claimed_write, action=action,
                                                      reason=reason, now=now(), switch_to=switch_to,
                                                      failure_reason=failure_reason)
            if update is not None:
                txn.update(ref, update)
                if result == "redispatch" and shard is not None:
                    txn.set(shard[0], progress.DECREMENT, merge=True)
            return str(result)

        return txn_fn(self.fs.transaction())

    def mark_redispatched(self, batch_id: str, item_ids: Iterable[str]) -> None:
        wb = self.fs.batch()
        for item_id in item_ids:
            # updated_at too: the re-dispatched item gets a whole stall period before it is given up
            wb.update(self.item_ref(batch_id, item_id), {"redispatched_at": now(), "updated_at": now(),
                                                         "redispatch_count": firestore.Increment(1)})
        wb.commit()

    def record_rejected(self, message_id: str, subscription: str, data: bytes, reason: str, *,
                        source: str | None = None, body: bytes | None = None,
                        body_bytes: int | None = None) -> str:
        """Keep a dead-lettered message that names no known item, where an operator sees it: `data` is
        its (base64) message data. A delivery that could not even be parsed as a push envelope has no
        data; then `body` keeps a bounded prefix of the raw push body and `body_bytes` its full size.
        Idempotent per message id (a redelivery overwrites the same document). Returns the doc id."""
        # the id is hashed: a message id is untrusted text, and "/" would address another document
        doc_id = hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]

        def text(value: str, n: int) -> str:  # untrusted JSON text may hold lone surrogates: not UTF-8
            return value[:n].encode("utf-8", "backslashreplace").decode("utf-8")

        doc = {"message_id": text(message_id, 256), "subscription": text(subscription, 512),
               "data": data[:64 * 1024], "reason": text(reason, 2000), "source": source, "received_at": now()}
        if body is not None:  # a Firestore document holds 1 MiB; 64 KiB of the body is plenty to read
            doc.update(body=body[:64 * 1024], body_bytes=len(body) if body_bytes is None else body_bytes)
        self.fs.collection(REJECTED).document(doc_id).set(doc)
        return doc_id

    # -- the batch document: compare-and-set -------------------------------------------------
    def _compare_and_set(self, ref, decide: Callable[[dict], tuple[object, dict | None]]) -> object:
        """Read, decide, and write only if nobody wrote in between (an update-time precondition).

        For the one-shot transitions on the batch document (claim, lease, status): unlike a
        transaction it takes no lock, so the burst of callers at the end of a batch cannot deadlock
        each other on it; a loser backs off briefly, re-reads and sees the winner's write."""

        def attempt() -> object:
            snap = ref.get()
            if not snap.exists:
                raise UnknownItem(f"no batch {ref.id}")
            result, update = decide(snap.to_dict())
            if update is not None:
                ref.update({**update, "updated_at": now()},
                           option=self.fs.write_option(last_update_time=snap.update_time))
            return result

        try:
            return _CAS_RETRY(attempt)()
        except gexc.RetryError as exc:
            raise ContentionError(f"{ref.path}: still contended after {_CAS_RETRY.timeout} s") from exc

    def claim_consolidation(self, batch_id: str, reason: str, claimant: str, *, take_over: bool = False) -> bool:
        """Exactly one caller wins the right to publish the consolidation request (see
        lifecycle.decide_claim). `claimant` is stable across the caller's retries (its Pub/Sub
        message id), so the winner's redelivery may publish what its first delivery did not."""
        return bool(self._compare_and_set(self.batch_ref(batch_id), lambda b: lc.decide_claim(
            b, reason, claimant, now(), take_over=take_over)))

    def take_lease(self, batch_id: str, token: str) -> tuple[str, dict]:
        """('run' | 'done' | 'busy', batch) for the delivery holding `token` (lifecycle.decide_lease)."""
        return self._compare_and_set(self.batch_ref(batch_id),  # type: ignore[return-value]
                                     lambda b: lc.decide_lease(b, token, now()))

    def renew_lease(self, batch_id: str, token: str) -> bool:
        return bool(self._compare_and_set(self.batch_ref(batch_id), lambda b: lc.decide_renew(b, token, now())))

    def release_lease(self, batch_id: str, token: str) -> bool:
        return bool(self._compare_and_set(self.batch_ref(batch_id), lambda b: lc.decide_release(b, token)))

    def consolidation_dead_lettered(self, batch_id: str, error: str) -> bool:
        return bool(self._compare_and_set(self.batch_ref(batch_id), lambda b: lc.decide_consolidation_dead_letter(
            b, now(), error)))

    def dispatch_failed(self, batch_id: str, token: str, error: str) -> bool:
        return bool(self._compare_and_set(self.batch_ref(batch_id), lambda b: lc.decide_dispatch_failed(
            b, token, error)))

    def next_merge_attempt(self, batch_id: str, token: str, failed_attempt: int) -> bool:
        return bool(self._compare_and_set(self.batch_ref(batch_id), lambda b: lc.decide_next_merge_attempt(
            b, token, failed_attempt)))

    def reopen(self, batch_id: str, claimant: str, *, auto: bool) -> tuple[str, dict]:
        """Re-open a failed consolidation (lifecycle.decide_reopen): ('reopened', batch) or (why not, batch).

        A transaction over the batch and its date: a start that makes a newer run of the date active
        and this re-open cannot both succeed (the start reads this batch; this reads the date)."""
        ref = self.batch_ref(batch_id)

        @firestore.transactional
        def txn_fn(txn) -> tuple[str, dict]:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                raise UnknownItem(f"no batch {batch_id}")
            batch = snap.to_dict()
            date_snap = self.date_ref(dt.date.fromisoformat(batch["game_date"])).get(transaction=txn)
            active = date_snap.get("active_batch_id") if date_snap.exists else None
            result, update = lc.decide_reopen(batch, active, claimant, now(), auto=auto)
            if update is None:
                return str(result), batch
            txn.update(ref, {**update, "updated_at": now()})
            return str(result), {**batch, **update}

        return txn_fn(self.fs.transaction())
