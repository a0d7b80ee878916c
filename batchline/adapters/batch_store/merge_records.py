"""Writes of the batch document that record what a MERGE did: a consolidation's result and final
record, the truthful failure when Firestore refuses that record for good, and the reconciliation's
orphan merges and drops. Firestore's refusal (400 InvalidArgument) is raised as RecordRefused, so the
flow that decides what to say about it (batchline/flows/merge_record.py) needs no google exception."""

from __future__ import annotations

from google.api_core import exceptions as gexc
from google.cloud import firestore

from batchline.adapters.batch_store.batches import BatchWrites
from batchline.domain.errors import RecordRefused
from batchline.domain.faults import FaultSpec
from batchline.domain.statuses import CONSOLIDATING

RECORD_FAULT = "record_merge"  # the step record_fail / record_too_large count their attempts on


class MergeRecords(BatchWrites):
    def record_merge_result(self, batch_id: str, lease: str, merged: dict, job_id: str, faults: FaultSpec) -> bool:
        """Record MERGE `job_id`'s verified result under the lease; False when the lease is lost.
        RecordRefused when Firestore refuses the write for good (or an injected record_too_large)."""
        fields = {"merge_result": merged, "main_table_dml_jobs": firestore.ArrayUnion([job_id])}
        try:
            self._inject_record_fault(batch_id, faults)
            return self.transition(batch_id, [CONSOLIDATING], fields, lease_token=lease)
        except gexc.InvalidArgument as exc:
            raise RecordRefused(str(exc)) from exc

    def record_consolidated(self, batch_id: str, lease: str, fields: dict) -> bool:
        """The consolidated batch's final record under the lease; RecordRefused as above."""
        try:
            return self.transition(batch_id, [CONSOLIDATING], fields, lease_token=lease)
        except gexc.InvalidArgument as exc:
            raise RecordRefused(str(exc)) from exc

    def fail_merged_unrecorded(self, batch_id: str, lease: str, job_id: str, fields: dict) -> bool:
        """Fail the consolidation with `fields`, keeping `job_id` among the batch's main-table DML."""
        return self.transition(batch_id, [CONSOLIDATING],
                               {**fields, "main_table_dml_jobs": firestore.ArrayUnion([job_id])}, lease_token=lease)

    def record_orphans_dropped(self, batch_id: str, dropped: dict) -> None:
        self.set_batch_fields(batch_id, {"orphans_dropped": firestore.ArrayUnion([dropped])})

    def record_orphans_merged(self, batch_id: str, merged: dict, job_id: str) -> None:
        """An orphan MERGE's verified result; its pending record cleared in the same write."""
        self.set_batch_fields(batch_id, {"orphan_merge_pending": None, "orphans_merged": firestore.ArrayUnion([merged]),
                                         "main_table_dml_jobs": firestore.ArrayUnion([job_id])})

    def _inject_record_fault(self, batch_id: str, faults: FaultSpec) -> None:
        """record_too_large=N, then record_fail=M: the first N attempts are refused as too large, the M
        after them fail as if Firestore were unavailable (the real exception types, handled as such)."""
        if not (faults.record_fail or faults.record_too_large):
            return
        n = self.count_fault_attempt(batch_id, RECORD_FAULT)
        if n <= faults.record_too_large:
            raise gexc.InvalidArgument(f"injected record_too_large (attempt {n}): too many index entries for entity")
        if n <= faults.record_too_large + faults.record_fail:
            raise gexc.ServiceUnavailable(f"injected record_fail (attempt {n}): Firestore unavailable")
