"""Writes of the batch, date and pin documents: registering a run, its dispatch lease, the
consolidation claim and lease, MERGE attempts, re-opens and results; each a decision of
batchline.domain.lifecycle applied conditionally."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import firestore

from batchline.adapters.batch_store.documents import Documents, now
from batchline.domain import ids, progress
from batchline.domain import lifecycle as lc
from batchline.domain.errors import BatchConflict, RepairAlreadyAttempted, UnknownBatch
from batchline.domain.runs import Item, decide_new_run, new_batch_document, superseded_update
from batchline.domain.statuses import CONSOLIDATING, CONSOLIDATION_FAILED, PENDING, PERMANENT, LeaseVerdict
from batchline.layout import ITEMS, MANIFESTS

_WRITE_BATCH = 400  # below Firestore's 500 writes per commit


@dataclass(frozen=True)
class StartSpec:
    """What a start asks for (create_batch's arguments), carried into its transaction."""

    batch_id: str
    game_date: dt.date
    items: list[Item]
    force: bool
    faults: str | None
    dispatch_token: str
    only_items: list[str] | None
    scheduled_items: list[str] | None
    repeat_repair: bool


class BatchWrites(Documents):
    # -- creating a batch ---------------------------------------------------------------------
    def create_batch(
        self,
        batch_id: str,
        game_date: dt.date,
        items: list[Item],
        *,
        force: bool,
        faults: str | None,
        dispatch_token: str,
        only_items: list[str] | None = None,
        scheduled_items: list[str] | None = None,
        repeat_repair: bool = False,
    ) -> str | None:
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
        refused while the date's newest run failed consolidation (repair_blocked)."""
        run = StartSpec(batch_id, game_date, list(items), force, faults, dispatch_token, only_items, scheduled_items,
                     repeat_repair)
        superseded = firestore.transactional(self._claim_date)(self.fs.transaction(), run)
        self.create_items(batch_id, items)
        return superseded

    def _claim_date(self, txn, run: StartSpec) -> str | None:
        """The transaction of create_batch: the date's active run, decided by decide_new_run."""
        date_ref, day = self.date_ref(run.game_date), run.game_date.isoformat()
        snap = date_ref.get(transaction=txn)
        date_doc = (snap.to_dict() or {}) if snap.exists else {}
        previous = date_doc.get("active_batch_id")
        prev = self.batch_ref(previous).get(transaction=txn) if previous else None
        t = now()
        decided = decide_new_run(date_doc, prev.get("status") if prev and prev.exists else None,
                                    batch_id=run.batch_id, game_date=day, force=run.force,
                                    only_items=run.only_items, repeat_repair=run.repeat_repair, now=t)
        if decided.conflict:
            raise BatchConflict(decided.conflict[0], decided.conflict[1], repair=run.only_items is not None,
                                reason=decided.conflict[2])
        if decided.repaired_by is not None:
            raise RepairAlreadyAttempted(decided.repaired_by, sorted(run.only_items or []))
        if decided.superseded:
            txn.update(self.batch_ref(decided.superseded), superseded_update(run.batch_id, t))
        item_ids = [i.item_id for i in run.items]
        txn.create(self.batch_ref(run.batch_id), new_batch_document(
            run.batch_id, day, item_ids, progress.shard_sizes(item_ids), force=run.force, faults=run.faults,
            dispatch_token=run.dispatch_token, only_items=run.only_items, scheduled_items=run.scheduled_items,
            now=t))
        txn.set(date_ref, decided.date_update)  # a full run starts the date's repair record afresh
        return decided.superseded

    def create_items(self, batch_id: str, items: list[Item]) -> None:
        """Item documents in pending state; those that already exist are left as they are (a resumed
        dispatch re-creates only what a crashed start did not get to)."""
        existing = {s.id for s in self.batch_ref(batch_id).collection(ITEMS).select([]).stream()}
        todo = [i for i in items if i.item_id not in existing]
        t = now()  # one instant: created_at == updated_at until the item moves
        for chunk_start in range(0, len(todo), _WRITE_BATCH):
            wb = self.fs.batch()
            for item in todo[chunk_start : chunk_start + _WRITE_BATCH]:
                wb.create(
                    self.item_ref(batch_id, item.item_id),
                    {
                        "item_id": item.item_id,
                        "game_id": item.game_id,
                        "status": PENDING,
                        "staging_table": None,
                        "write_id": None,
                        "row_count": None,
                        "created_at": t,
                        "updated_at": t,
                    },
                )
            wb.commit()

    def take_dispatch(self, batch_id: str, token: str, dead_holder: str | None = None) -> bool:
        """Take or renew the dispatch lease (see lifecycle.decide_dispatch_lease)."""
        return bool(
            self.compare_and_set(
                self.batch_ref(batch_id), lambda b: lc.decide_dispatch_lease(b, token, now(), dead_holder)
            )
        )

    def mark_running(self, batch_id: str, dispatch_token: str) -> bool:
        """Dispatching -> running, unless a consolidation claim already moved the batch on."""
        return bool(
            self.compare_and_set(self.batch_ref(batch_id), lambda b: lc.decide_mark_running(b, dispatch_token, now()))
        )

    def set_batch_fields(self, batch_id: str, fields: dict) -> None:
        """Fields that do not change the status (status changes go through `transition`)."""
        if "status" in fields:
            raise ValueError("status changes go through BatchStore.transition")
        self.batch_ref(batch_id).update({**fields, "updated_at": now()})

    def transition(
        self, batch_id: str, allowed_from: Iterable[str], fields: dict, lease_token: str | None = None
    ) -> bool:
        """Set fields (a new status among them) only if the batch is in one of `allowed_from` (and, if
        given, its consolidation lease is still held by `lease_token`); False when another writer
        moved it on first."""
        return bool(
            self.compare_and_set(
                self.batch_ref(batch_id), lambda b: lc.decide_transition(b, allowed_from, fields, lease_token)
            )
        )

    def merge_failed(self, batch_id: str, lease_token: str, error: str, staged_items_kept: int,
                     rejected_job_id: str) -> bool:
        """A MERGE that failed permanently: the batch fails with the error, its staging kept, and the
        job is recorded as rejected so that no later recovery records it (merge_record.py)."""
        return self.transition(batch_id, [CONSOLIDATING], {
            "status": CONSOLIDATION_FAILED, "error": error[:4000], "failure_kind": PERMANENT,
            "staged_items_kept": staged_items_kept,
            "rejected_merge_jobs": firestore.ArrayUnion([rejected_job_id])}, lease_token=lease_token)

    def pin_manifest(self, batch_id: str, generation: int, attempt: int, pinned: dict) -> dict:
        """The manifest a MERGE attempt runs with, fixed before its job is submitted: the first writer
        wins and every later delivery of the same attempt gets the same one back, so the job a
        redelivery waits for and the manifest it verifies and records are always the same (an
        inventory taken again could name a write the job never read). `pinned` names the pin's rows in
        the manifest table (batchline/adapters/manifests.py), written before, and their counts: fixed-size."""
        ref = self.batch_ref(batch_id).collection(MANIFESTS).document(ids.merge_attempt_label(generation, attempt))
        try:
            ref.create({**pinned, "pinned_at": now()})
            return pinned
        except gexc.Conflict:
            return ref.get().to_dict() or {}

    def count_fault_attempt(self, batch_id: str, fault: str) -> int:
        """One more attempt at the step an injected fault (batchline/domain/faults.py) may fail, counted on the
        batch document across deliveries; returns the count. Used only where faults are allowed."""
        wb = self.fs.batch()
        wb.update(self.batch_ref(batch_id), {f"fault_attempts.{fault}": firestore.Increment(1)})
        return int(wb.commit()[0].transform_results[0].integer_value)

    def claim_consolidation(self, batch_id: str, reason: str, claimant: str, *, take_over: bool = False) -> bool:
        """Exactly one caller wins the right to publish the consolidation request (see
        lifecycle.decide_claim). `claimant` is stable across the caller's retries (its Pub/Sub
        message id), so the winner's redelivery may publish what its first delivery did not."""
        return bool(
            self.compare_and_set(
                self.batch_ref(batch_id), lambda b: lc.decide_claim(b, reason, claimant, now(), take_over=take_over)
            )
        )

    def take_lease(self, batch_id: str, token: str) -> tuple[LeaseVerdict, dict]:
        """('run' | 'done' | 'busy', batch) for the delivery holding `token` (lifecycle.decide_lease)."""
        return self.compare_and_set(self.batch_ref(batch_id), lambda b: lc.decide_lease(b, token, now()))

    def renew_lease(self, batch_id: str, token: str) -> bool:
        return bool(self.compare_and_set(self.batch_ref(batch_id), lambda b: lc.decide_renew(b, token, now())))

    def release_lease(self, batch_id: str, token: str) -> bool:
        return bool(self.compare_and_set(self.batch_ref(batch_id), lambda b: lc.decide_release(b, token)))

    def consolidation_dead_lettered(self, batch_id: str, error: str) -> bool:
        return bool(
            self.compare_and_set(
                self.batch_ref(batch_id), lambda b: lc.decide_consolidation_dead_letter(b, now(), error)
            )
        )

    def dispatch_failed(self, batch_id: str, token: str, error: str) -> bool:
        return bool(
            self.compare_and_set(self.batch_ref(batch_id), lambda b: lc.decide_dispatch_failed(b, token, error))
        )

    def next_merge_attempt(self, batch_id: str, token: str, failed_attempt: int) -> bool:
        return bool(
            self.compare_and_set(
                self.batch_ref(batch_id), lambda b: lc.decide_next_merge_attempt(b, token, failed_attempt)
            )
        )

    def reopen(self, batch_id: str, claimant: str, *, auto: bool) -> tuple[str, dict]:
        """Re-open a failed consolidation (lifecycle.decide_reopen): ('reopened', batch) or (why not, batch).

        A transaction over the batch and its date: a start that makes a newer run of the date active
        and this re-open cannot both succeed (the start reads this batch; this reads the date)."""
        ref = self.batch_ref(batch_id)

        @firestore.transactional
        def txn_fn(txn) -> tuple[str, dict]:
            snap = ref.get(transaction=txn)
            if not snap.exists:
                raise UnknownBatch(f"no batch {batch_id}")
            batch = snap.to_dict()
            date_snap = self.date_ref(dt.date.fromisoformat(batch["game_date"])).get(transaction=txn)
            active = date_snap.get("active_batch_id") if date_snap.exists else None
            result, update = lc.decide_reopen(batch, active, claimant, now(), auto=auto)
            if update is None:
                return str(result), batch
            txn.update(ref, {**update, "updated_at": now()})
            return str(result), {**batch, **update}

        return txn_fn(self.fs.transaction())
