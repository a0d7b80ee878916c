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

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

BATCHES = "batches"
ITEMS = "items"
DATES = "dates"
REJECTED = "rejected_messages"

# Batch statuses.
DISPATCHING = "dispatching"
RUNNING = "running"
CONSOLIDATION_REQUESTED = "consolidation_requested"
CONSOLIDATING = "consolidating"
CONSOLIDATED = "consolidated"
CONSOLIDATION_FAILED = "consolidation_failed"
DISPATCH_FAILED = "dispatch_failed"
SUPERSEDED = "superseded"
OPEN_STATUSES = (DISPATCHING, RUNNING)
ACTIVE_STATUSES = (DISPATCHING, RUNNING, CONSOLIDATION_REQUESTED, CONSOLIDATING)
TERMINAL_STATUSES = (CONSOLIDATED, CONSOLIDATION_FAILED, DISPATCH_FAILED, SUPERSEDED)

# Item statuses.
PENDING = "pending"
COMPLETED = "completed"
FAILED = "failed"

LEASE = dt.timedelta(minutes=15)
_WRITE_BATCH = 400  # below Firestore's 500 writes per commit


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BatchConflict(Exception):
    """A batch for the date is still active; the caller answers 409 naming it."""

    def __init__(self, batch_id: str, status: str):
        super().__init__(f"batch {batch_id} for this date is still {status}; use force to re-run")
        self.batch_id = batch_id
        self.status = status


class ContentionError(RuntimeError):
    """A compare-and-set kept losing; the handler answers 5xx and Pub/Sub redelivers."""


class UnknownItem(LookupError):
    """A message names a batch or item that batch state does not know."""


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
                     faults: str | None) -> str | None:
        """Register a new batch run as the date's active one; returns the batch it supersedes.

        The date document and the batch document change in one transaction, so two concurrent
        starts for a date cannot both win. Item documents are written before any work message is
        published, so a completion can never arrive for an item the state does not know.
        """
        date_ref = self.date_ref(game_date)
        batch_ref = self.batch_ref(batch_id)

        @firestore.transactional
        def claim_date(txn) -> str | None:
            snap = date_ref.get(transaction=txn)
            previous = snap.get("active_batch_id") if snap.exists else None
            superseded = None
            if previous:
                prev_snap = self.batch_ref(previous).get(transaction=txn)
                prev_status = prev_snap.get("status") if prev_snap.exists else None
                if prev_status in ACTIVE_STATUSES:
                    # Even a forced re-run waits for a consolidation under way: superseding it
                    # mid-MERGE could land the old batch's rows after the new one's.
                    if not force or prev_status in (CONSOLIDATION_REQUESTED, CONSOLIDATING):
                        raise BatchConflict(previous, prev_status)
                    txn.update(self.batch_ref(previous), {"status": SUPERSEDED, "superseded_by": batch_id,
                                                          "updated_at": now()})
                    superseded = previous
            txn.create(batch_ref, {
                "batch_id": batch_id,
                "game_date": game_date.isoformat(),
                "status": DISPATCHING,
                "expected_items": len(items),
                "force": force,
                "faults": faults,
                "created_at": now(),
                "updated_at": now(),
            })
            txn.set(date_ref, {"active_batch_id": batch_id, "updated_at": now()})
            return superseded

        superseded = claim_date(self.fs.transaction())
        for chunk_start in range(0, len(items), _WRITE_BATCH):
            wb = self.fs.batch()
            for item in items[chunk_start:chunk_start + _WRITE_BATCH]:
                wb.create(self.item_ref(batch_id, item.item_id), {
                    "item_id": item.item_id,
                    "game_id": item.game_id,
                    "status": PENDING,
                    "staging_table": None,
                    "row_count": None,
                    "created_at": now(),
                    "updated_at": now(),
                })
            wb.commit()
        return superseded

    def mark_running(self, batch_id: str) -> None:
        """Dispatching -> running, unless a consolidation claim already moved the batch on."""
        self._compare_and_set(self.batch_ref(batch_id), lambda b: (
            None, {"status": RUNNING, "dispatched_at": now()} if b["status"] == DISPATCHING else None))

    def set_batch_fields(self, batch_id: str, fields: dict) -> None:
        """Fields that do not change the status (status changes go through `transition`)."""
        if "status" in fields:
            raise ValueError("status changes go through BatchStore.transition")
        self.batch_ref(batch_id).update({**fields, "updated_at": now()})

    def transition(self, batch_id: str, allowed_from: Iterable[str], fields: dict,
                   lease_message_id: str | None = None) -> bool:
        """Set fields (a new status among them) only if the batch is in one of `allowed_from` (and, if
        given, still leased by `lease_message_id`); False when another writer moved it on first."""
        allowed = set(allowed_from)

        def decide(batch: dict) -> tuple[bool, dict | None]:
            ok = batch["status"] in allowed and (
                lease_message_id is None or batch.get("lease_message_id") == lease_message_id)
            return ok, (fields if ok else None)

        return bool(self._compare_and_set(self.batch_ref(batch_id), decide))

    # -- reading ------------------------------------------------------------------------------
    def get_batch(self, batch_id: str) -> dict | None:
        snap = self.batch_ref(batch_id).get()
        return snap.to_dict() if snap.exists else None

    def get_item(self, batch_id: str, item_id: str) -> dict | None:
        snap = self.item_ref(batch_id, item_id).get()
        return snap.to_dict() if snap.exists else None

    def items(self, batch_id: str) -> list[dict]:
        return [s.to_dict() for s in self.batch_ref(batch_id).collection(ITEMS).stream()]

    def items_with_status(self, batch_id: str, status: str) -> list[dict]:
        q = self.batch_ref(batch_id).collection(ITEMS).where(filter=FieldFilter("status", "==", status))
        return [s.to_dict() for s in q.stream()]

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

    # -- item transitions ---------------------------------------------------------------------
    def _item_transition(self, batch_id: str, item_id: str,
                         decide: Callable[[dict], tuple[object, dict | None]]) -> object:
        """One transaction on one item document: read it, let `decide` return (result, fields to
        update or None), write. Items are never contended by more than their own redeliveries.
        `updated_at` is progress for the stall check, so each decision sets it or not."""
        ref = self.item_ref(batch_id, item_id)

        @firestore.transactional
        def txn_fn(txn) -> object:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                raise UnknownItem(f"batch {batch_id} has no item {item_id}")
            result, update = decide(snap.to_dict())
            if update is not None:
                txn.update(ref, update)
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
                          attempt: int) -> str:
        """Mark an item completed; idempotent. Returns 'recorded', 'duplicate' or 'late'.

        'late' means the batch already moved past consolidation: the item is recorded, and the caller
        reports it loudly, because its staging table was not part of the MERGE.
        """
        # Read outside the transaction: a transactional read would lock the batch document and make
        # it the hot document F3 is about. "late" is advisory; consolidation merges every staging
        # table that exists, whatever the completions say.
        batch = self.batch_ref(batch_id).get()
        late = batch.exists and batch.get("status") not in OPEN_STATUSES

        def decide(item: dict) -> tuple[str, dict | None]:
            if item["status"] == COMPLETED:
                return "duplicate", None
            return ("late" if late else "recorded"), {
                "status": COMPLETED, "staging_table": staging_table, "row_count": row_count,
                "attempt": attempt, "previous_status": item["status"], "late": late, "updated_at": now()}

        return str(self._item_transition(batch_id, item_id, decide))

    def record_failure(self, batch_id: str, item_id: str, reason: str) -> str:
        """Mark an item failed (dead-lettered or given up on); never overrides a completion.
        Returns 'recorded', 'already_completed' or 'duplicate'."""

        def decide(item: dict) -> tuple[str, dict | None]:
            if item["status"] == COMPLETED:
                return "already_completed", None
            if item["status"] == FAILED:
                return "duplicate", None
            return "recorded", {"status": FAILED, "failure_reason": reason, "updated_at": now()}

        return str(self._item_transition(batch_id, item_id, decide))

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

    # -- consolidation claim and lease --------------------------------------------------------
    def _compare_and_set(self, ref, decide: Callable[[dict], tuple[object, dict | None]],
                         attempts: int = 20) -> object:
        """Read, decide, and write only if nobody wrote in between (an update-time precondition).

        For the one-shot transitions on the batch document (claim, lease): unlike a transaction it
        takes no lock, so the burst of callers at the end of a batch cannot deadlock each other on it;
        a loser re-reads and sees the winner's write."""
        for _ in range(attempts):
            snap = ref.get()
            if not snap.exists:
                raise UnknownItem(f"no batch {ref.id}")
            result, update = decide(snap.to_dict())
            if update is None:
                return result
            try:
                ref.update({**update, "updated_at": now()},
                           option=self.fs.write_option(last_update_time=snap.update_time))
                return result
            except gexc.FailedPrecondition:
                continue
        raise ContentionError(f"{ref.path}: still contended after {attempts} attempts")

    def claim_consolidation(self, batch_id: str, reason: str, claimant: str, *, take_over: bool = False) -> bool:
        """Exactly one caller wins the right to publish the consolidation request.

        `claimant` identifies the caller across retries (the Pub/Sub message id, which a redelivery
        keeps): a winner that crashed before publishing left no `consolidation_message_id`, and only its
        own redelivery may publish again. `take_over` lets the stall check adopt a claim whose
        claimant never came back."""

        def decide(batch: dict) -> tuple[bool, dict | None]:
            claim = {"status": CONSOLIDATION_REQUESTED, "consolidation_reason": reason,
                     "consolidation_claimant": claimant, "consolidation_requested_at": now()}
            if batch["status"] in OPEN_STATUSES:
                return True, claim
            unpublished = batch["status"] == CONSOLIDATION_REQUESTED and not batch.get("consolidation_message_id")
            if unpublished and batch.get("consolidation_claimant") == claimant:
                return True, None
            if unpublished and take_over:
                return True, claim
            return False, None

        return bool(self._compare_and_set(self.batch_ref(batch_id), decide))

    def take_lease(self, batch_id: str, message_id: str, *, manual_retry: bool = False) -> tuple[str, dict]:
        """Returns ('run', batch) when this message may consolidate, ('done', batch) when the batch
        is already past consolidation, or ('busy', batch) when another live message holds it.

        `manual_retry` (an operator's request) re-opens a `consolidation_failed` batch, whose staging
        tables were kept for exactly this, under a new consolidation generation (a new MERGE job id)."""

        def decide(batch: dict) -> tuple[tuple[str, dict], dict | None]:
            status = batch["status"]
            if status == CONSOLIDATION_FAILED and manual_retry:
                update = {"status": CONSOLIDATING, "lease_message_id": message_id,
                          "lease_expires_at": now() + LEASE, "error": None,
                          "consolidation_generation": int(batch.get("consolidation_generation") or 0) + 1}
                return ("run", {**batch, **update}), update
            if status in TERMINAL_STATUSES:
                return ("done", batch), None
            if status == CONSOLIDATING:
                holder = batch.get("lease_message_id")
                expires = batch.get("lease_expires_at")
                if holder != message_id and expires and expires > now():
                    return ("busy", batch), None
            elif status != CONSOLIDATION_REQUESTED:
                return ("busy", batch), None  # still open: a claim must come first
            update = {"status": CONSOLIDATING, "lease_message_id": message_id, "lease_expires_at": now() + LEASE}
            return ("run", {**batch, **update}), update

        return self._compare_and_set(self.batch_ref(batch_id), decide)  # type: ignore[return-value]
