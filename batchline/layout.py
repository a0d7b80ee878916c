"""The Firestore layout of batch state, declared once for the batch store and for infra: its
collections, and the fields that grow with a batch's item count (exempt from indexing).

Firestore indexes every field of every document by default, two entries per scalar (ascending and
descending, map subfields included) and one per array element, and refuses a write that gives one
document more than 40,000 index entries (https://cloud.google.com/firestore/quotas). A batch's
manifest map costs two entries per item, so the MERGE result of a batch of ~13,000 items could not be
recorded. Nothing queries these fields, so infra (infra/components/firestore.py) exempts each one of
them: an exemption on a map field covers its subfields. docs/staging.md lists them with their
worst-case size. The Firestore emulator neither enforces the index-entry limit nor implements field
overrides (FirestoreAdmin.UpdateField answers 501), so locally they are declared and never applied;
the 1 MiB document limit it does enforce.
"""

from __future__ import annotations

# The collections of batch state (the batch store, batchline/adapters/batch_store, is their one writer):
#   batches/{batch_id}                           status, expected count, consolidation record, counts
#   batches/{batch_id}/items/{item_id}           one document per work item
#   batches/{batch_id}/progress/{n}              terminal items counted per shard of 50
#   batches/{batch_id}/manifests/g<gen>_a<att>   a MERGE attempt's pin (its rows: adapters/manifests.py)
#   batches/{batch_id}/dead_letters/{hash}       one per dead-lettered work message
#   dates/{game_date}                            the date's active batch, repairs, the orphan-merge lease
#   rejected_messages/{hash}                     dead letters no item could be found for
#   control_requests/{hash}                      one per operator request id
BATCHES, ITEMS, PROGRESS, MANIFESTS, DEAD_LETTERS = "batches", "items", "progress", "manifests", "dead_letters"
DATES, REJECTED, CONTROL_REQUESTS = "dates", "rejected_messages", "control_requests"

# collection group -> top-level fields exempted from every automatic index
UNINDEXED: dict[str, tuple[str, ...]] = {
    BATCHES: (
        "merge_result",  # counts, and recovered items capped at 1,000 (what it merged: the manifest table)
        "failed_items", "missing_items", "recovered_items", "completed_without_write",  # each capped at 1,000
        "kept_previous_items",  # player -> batch, capped at 1,000 entries
        "scheduled_items", "only_items",  # the date's schedule, a repair's items
        "progress_shard_items",  # one size per shard of 50 items
        "orphans_merged", "orphans_dropped",  # the reconciliation's records, with their items
        "invalid_context_rows",  # capped at 100
    ),
    MANIFESTS: ("recovered", "missing_writes"),  # a pin document's capped lists (rows: adapters/manifests.py)
    DATES: ("repaired_items",),  # items repaired since the date's last full run
}


def exemptions() -> list[tuple[str, str]]:
    """(collection group, field) of every exemption, in a stable order."""
    return [(group, f) for group, fields in UNINDEXED.items() for f in fields]
