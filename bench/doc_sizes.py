"""How large the batch-state documents that grow with the item count get, and how many index entries
they would cost without the exemptions (batchline/layout.py), at a given batch size.

    PYTHONPATH=$PWD .venv/bin/python bench/doc_sizes.py [--items 100000] [--item-id-len 12]

Sizes follow Firestore's storage-size rules (https://cloud.google.com/firestore/docs/storage-size, read
2026-12-06): a string is its UTF-8 bytes + 1, a field is its name's size + its value's size, a map is
sized like a document, an array is the sum of its values, an integer 8 bytes, a timestamp 8; a document
adds its name's size and 32 bytes. Index entries follow the automatic single-field indexes
(https://cloud.google.com/firestore/docs/concepts/index-overview): two per scalar field or map subfield
(ascending, descending), one per array element (array-contains). Limits: 1 MiB per document and 40,000
index entries per document (https://cloud.google.com/firestore/quotas). The documents are built the way
batchline writes them since issue 15 (the field names and shapes of coordinator.py, state.py, lifecycle.py,
orphans.py: the manifest is a BigQuery table, item lists are capped at 1,000 with a count), with item
ids of `--item-id-len` characters (an item id may have up to 64) and 32-character write ids. Each
growing field is shown at its worst case on its own (e.g. failed_items when every item failed); the
totals are the two realistic extremes of a batch document: every item merged, and every item failed.
Figures, not assertions; docs/staging.md quotes them.
"""

from __future__ import annotations

import argparse
import datetime as dt

from batchline.domain.progress import shard_sizes

MIB = 1024 * 1024
INDEX_LIMIT = 40_000
LIST_CAP = 1000  # batchline/flows/coordinator.py LIST_CAP: item lists kept on a document, each with its count


def size(value) -> int:
    if isinstance(value, str):
        return len(value.encode()) + 1
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, (int, float, dt.datetime)):
        return 8
    if isinstance(value, list):
        return sum(size(v) for v in value)
    if isinstance(value, dict):
        return sum(size(k) + size(v) for k, v in value.items()) + 32
    raise TypeError(type(value))


def entries(value) -> int:
    if isinstance(value, dict):
        return sum(entries(v) for v in value.values())
    if isinstance(value, list):
        return len(value)
    return 2


def doc_size(path: list[str], fields: dict) -> int:
    return sum(size(p) for p in path) + 16 + size(fields)


def build(n: int, id_len: int) -> dict[str, tuple[list[str], dict]]:
    """The documents as batchline writes them since issue 15: what a MERGE merged is a pin's rows in the
    manifest table (batchline/adapters/manifests.py), so `merge_result` and the pin document hold counts and
    lists capped at LIST_CAP (coordinator.py `capped`); what still lists every item is shown too."""
    items = [f"p{i:0{id_len - 1}d}" for i in range(n)]
    capped = items[:LIST_CAP]
    now = dt.datetime.now(dt.UTC)
    batch_id = "20301231_0123456789ab"
    pin = "g0_a0_0123456789ab"
    base = {"batch_id": batch_id, "game_date": "2030-12-31", "status": "consolidated", "expected_items": n,
            "progress_shard_items": shard_sizes(items), "created_at": now, "updated_at": now}
    merge_result = {"job_id": f"batchline_merge_{batch_id}_g0_a0", "pin": pin, "staged_rows": 5 * n,
                    "staged_keys": 5 * n, "staged_items": n, "affected_rows": 5 * n, "verified_rows": 5 * n,
                    "verified_items": n, "verified_systems": 5, "recovered": capped, "recovered_count": n,
                    "timings_s": {"inventory": 1.0, "merge": 1.0, "verify": 1.0}, "staged_rows_total": 5 * n,
                    "abandoned_writes": 0}
    lists = {f: capped for f in ("failed_items", "missing_items", "recovered_items", "completed_without_write")}
    counts = {f"{f}_count": n for f in lists}
    dropped = {"items": items, "why": {i: f"the player's active rows come from the newer batch {batch_id}"
                                       for i in items}, "newer_batches": [batch_id], "at": now}
    path = ["batches", batch_id]
    docs = {
        "batch, every item merged (and recovered)": (path, {**base, "merge_result": merge_result,
                                                            "merged_items": n, **lists, **counts}),
        "batch, every item failed": (path, {**base, **lists, **counts}),
        "pin document `manifests/g0_a0`": ([*path, "manifests", "g0_a0"], {
            "pin": pin, "merge_items": n, "scheduled_items": n, "staged_rows_total": 5 * n, "abandoned_writes": 0,
            "recovered": capped, "recovered_count": n, "missing_writes": capped, "missing_writes_count": n,
            "pinned_at": now}),
        "repair batch of every item (`only_items` + `scheduled_items`)": (path, {
            **base, "only_items": items, "scheduled_items": items}),
        "repair batch of one item of the date (`scheduled_items`)": (path, {
            **base, "only_items": items[:1], "scheduled_items": items}),
        "date (`repaired_items`, every item repaired)": (["dates", "2030-12-31"], {
            "active_batch_id": batch_id, "repaired_items": items, "last_repair_batch_id": batch_id}),
        "batch whose every orphaned item was dropped (`orphans_dropped`)": (path, {
            **base, "orphans_dropped": [dropped]}),
    }
    fields = {
        "merge_result (counts, pin, recovered capped)": merge_result,
        "failed_items / missing_items / recovered_items / completed_without_write (each, capped)": capped,
        "scheduled_items (a repair batch's schedule)": items,
        "only_items (a repair of every item)": items,
        "kept_previous_items (capped at 1,000)": {i: batch_id for i in items[:1000]},
        "progress_shard_items": shard_sizes(items),
        "orphans_dropped (every item dropped)": [dropped],
        "date: repaired_items": items,
    }
    return {"docs": docs, "fields": fields}  # type: ignore[return-value]


def ceiling(id_len: int, name: str) -> int | None:
    """The largest item count at which the document `name` still fits 1 MiB, None when it does not grow
    with the items. Past LIST_CAP every document grows linearly (lists of items, one shard size per 50),
    so two sizes give its bytes per item."""
    n1, n2 = 2 * LIST_CAP, 4 * LIST_CAP
    b1, b2 = (doc_size(*build(n, id_len)["docs"][name]) for n in (n1, n2))
    per_item = (b2 - b1) / (n2 - n1)
    return None if per_item == 0 else int(n1 + (MIB - b1) / per_item)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--item-id-len", type=int, default=12)
    a = ap.parse_args()
    built = build(a.items, a.item_id_len)
    print(f"{a.items:,} items, item ids of {a.item_id_len} characters\n")
    print("| field (worst case on its own) | bytes | index entries if indexed |\n|---|---:|---:|")
    for name, value in built["fields"].items():
        print(f"| {name} | {size(value):,} | {entries(value):,} |")
    print("\n| document | bytes | fits 1 MiB | fits 1 MiB up to | index entries if nothing exempted |\n"
          "|---|---:|---|---:|---:|")
    for name, (path, fields) in built["docs"].items():
        b = doc_size(path, fields)
        limit = ceiling(a.item_id_len, name)
        shown = f"{limit:,} items" if limit is not None else "no ceiling"
        print(f"| {name} | {b:,} | {'yes' if b <= MIB else 'NO'} | {shown} | {entries(fields):,} |")


if __name__ == "__main__":
    main()
