"""Writes of item documents and their progress shards: a completion or failure and its shard count
in one commit (exactly once), a verdict on a claim, re-dispatch marks; and whether the batch may be done."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from google.api_core import exceptions as gexc
from google.cloud import firestore

from batchline.adapters.batch_store import shards
from batchline.adapters.batch_store.documents import Documents, ItemSnapshot, now
from batchline.domain import lifecycle as lc
from batchline.domain.errors import UnknownItem
from batchline.domain.lifecycle import Decision, R
from batchline.domain.statuses import COMPLETED, FAILED, OPEN_STATUSES, ClaimVerdict, CompletionResult, FailureResult


class ItemWrites(Documents):
    def may_be_done(self, batch: dict, item_id: str, count: int | None = None) -> bool:
        """Whether the batch may have no pending item left, from its progress shards (progress.py):
        `count` is the item's shard count as a commit returned it, else it is read."""
        ref = self.batch_ref(batch["batch_id"])
        shard = shards.counted(batch, item_id, ref)
        if shard is None:
            return True
        if count is None:
            snap = shard[0].get()
            count = int((snap.to_dict() or {}).get("terminal") or 0) if snap.exists else 0
        return count >= shard[1] and shards.all_full(self.fs, batch, ref)

    def terminal_count(self, batch: dict) -> int:
        """Items that reached a terminal state, for a progress display: the progress shards (one small
        read), or two count queries for a batch without them."""
        counted = shards.total_counted(self.fs, batch, self.batch_ref(batch["batch_id"]))
        if counted is not None:
            return counted
        return sum(self.count_items(batch["batch_id"], s) for s in (COMPLETED, FAILED))

    def count_attempt(self, batch_id: str, item_id: str) -> int:
        """Count one more work attempt on the item and return the count. Used where the push
        envelope carries no deliveryAttempt (the emulator never sends it); also operator data.
        (It does not touch `updated_at`: an attempt is not progress for the stall check.)"""

        def decide(item: dict) -> tuple[int, dict]:
            n = int(item.get("attempts") or 0) + 1
            return n, {"attempts": n, "last_attempt_at": now()}

        return self.item_transition(batch_id, item_id, decide)

    def record_completion(
        self,
        batch_id: str,
        item_id: str,
        staging_table: str,
        row_count: int,
        attempt: int,
        write_id: str,
        batch: dict | None = None,
        item: ItemSnapshot | None = None,
    ) -> CompletionResult:
        """Mark an item completed; idempotent. Returns 'recorded', 'duplicate' or 'late'."""
        return self.record_completion_counted(
            batch_id, item_id, staging_table, row_count, attempt, write_id, batch, item
        )[0]

    def record_completion_counted(
        self,
        batch_id: str,
        item_id: str,
        staging_table: str,
        row_count: int,
        attempt: int,
        write_id: str,
        batch: dict | None = None,
        item: ItemSnapshot | None = None,
    ) -> tuple[CompletionResult, bool]:
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

        def decide(doc: dict) -> Decision[CompletionResult]:
            return lc.decide_completion(
                doc,
                late=late,
                staging_table=staging_table,
                row_count=row_count,
                attempt=attempt,
                write_id=write_id,
                now=now(),
            )

        return self.counted_transition(batch, item_id, decide, item)

    def counted_transition(
        self,
        batch: dict,
        item_id: str,
        decide: Callable[[dict], Decision[R]],
        item: ItemSnapshot | None = None,
    ) -> tuple[R, bool]:
        """An item's transition and its count on the batch's progress shard, in one commit: conditional
        on the caller's read of the item when given (one round trip), else (or when that race is lost)
        in a transaction. Returns (result, whether the batch may now be done)."""
        batch_id = batch["batch_id"]
        ref = self.item_ref(batch_id, item_id)
        shard = shards.counted(batch, item_id, self.batch_ref(batch_id))
        if item is not None:
            result, update = decide(item.data)
            if update is None:
                return result, self.may_be_done(batch, item_id)
            wb = self.fs.batch()
            wb.update(ref, update, option=self.fs.write_option(last_update_time=item.update_time))
            if shard is not None:
                wb.set(shard[0], shards.INCREMENT, merge=True)
            try:
                written = wb.commit()
            except gexc.FailedPrecondition:
                pass  # somebody wrote the item since the caller read it: decide again, in a transaction
            else:
                count = written[1].transform_results[0].integer_value if shard is not None else None
                return result, self.may_be_done(batch, item_id, count)

        result = self.item_transition(
            batch_id,
            item_id,
            decide,
            None if shard is None else (lambda txn: txn.set(shard[0], shards.INCREMENT, merge=True)),
        )
        return result, self.may_be_done(batch, item_id)

    def record_failure(self, batch_id: str, item_id: str, reason: str, *,
                       dead_lettered: bool = False) -> FailureResult:
        """Mark an item failed (dead-lettered or given up on); never overrides a completion.
        Returns 'recorded', 'already_completed' or 'duplicate'."""
        return self.record_failure_counted(batch_id, item_id, reason, dead_lettered=dead_lettered)[0]

    def record_failure_counted(
        self, batch_id: str, item_id: str, reason: str, *, dead_lettered: bool = False
    ) -> tuple[FailureResult, bool]:
        """record_failure, and whether the batch may now be done (progress.py)."""
        batch = self.get_batch(batch_id) or {"batch_id": batch_id}
        return self.counted_transition(
            batch, item_id, lambda item: lc.decide_failure(item, reason, now(), dead_lettered=dead_lettered)
        )

    def reject_claim(
        self,
        batch: dict,
        item_id: str,
        claimed_write: str,
        action: str,
        reason: str,
        *,
        switch_to: tuple[str, int] | None = None,
        failure_reason: str | None = None,
    ) -> ClaimVerdict:
        """Apply a verdict of the bulk verification to one item's claim, in one transaction (lifecycle.
        decide_claim_rejected); an item sent back to pending is counted off its progress shard in the
        same commit, so the shards stay exact. Returns the action applied, or 'stale'."""
        shard = shards.counted(batch, item_id, self.batch_ref(batch["batch_id"]))
        ref = self.item_ref(batch["batch_id"], item_id)

        @firestore.transactional
        def txn_fn(txn) -> ClaimVerdict:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                raise UnknownItem(f"batch {batch['batch_id']} has no item {item_id}")
            result, update = lc.decide_claim_rejected(
                snap.to_dict(),
                claimed_write=claimed_write,
                action=action,
                reason=reason,
                now=now(),
                switch_to=switch_to,
                failure_reason=failure_reason,
            )
            if update is not None:
                txn.update(ref, update)
                if result == ClaimVerdict.REDISPATCH and shard is not None:
                    txn.set(shard[0], shards.DECREMENT, merge=True)
            return result

        return txn_fn(self.fs.transaction())

    def mark_redispatched(self, batch_id: str, item_ids: Iterable[str]) -> None:
        wb = self.fs.batch()
        for item_id in item_ids:
            # updated_at too: the re-dispatched item gets a whole stall period before it is given up
            wb.update(
                self.item_ref(batch_id, item_id),
                {"redispatched_at": now(), "updated_at": now(), "redispatch_count": firestore.Increment(1)},
            )
        wb.commit()
