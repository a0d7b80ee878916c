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
batchline writes them (the field names and shapes of coordinator.py, state.py, lifecycle.py), with item
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
    items = [f"p{i:0{id_len - 1}d}" for i in range(n)]
    write = "0" * 32
    manifest = {i: write for i in items}
    now = dt.datetime.now(dt.UTC)
    batch_id = "20301231_0123456789ab"
    base = {"batch_id": batch_id, "game_date": "2030-12-31", "status": "consolidated", "expected_items": n,
            "progress_shard_items": shard_sizes(items), "created_at": now, "updated_at": now}
    merge_result = {"job_id": f"batchline_merge_{batch_id}_g0_a0", "staged_rows": 5 * n, "staged_keys": 5 * n,
                    "staged_items": n, "affected_rows": 5 * n, "verified_rows": 5 * n, "verified_items": n,
                    "verified_systems": 5, "items": items, "manifest": manifest, "recovered": [],
                    "timings_s": {"inventory": 1.0, "merge": 1.0, "verify": 1.0}, "staged_rows_total": 5 * n,
                    "abandoned_writes": 0}
    path = ["batches", batch_id]
    docs = {
        "batch, every item merged": (path, {**base, "merge_result": merge_result, "merged_items": n,
                                            "failed_items": [], "missing_items": [], "recovered_items": []}),
        "batch, every item failed": (path, {**base, "failed_items": items, "missing_items": []}),
        "pinned manifest": ([*path, "manifests", "g0_a0"], {"manifest": manifest, "recovered": [],
                                                            "missing_writes": [], "pinned_at": now}),
        "date (repaired_items)": (["dates", "2030-12-31"], {"active_batch_id": batch_id, "repaired_items": items,
                                                            "last_repair_batch_id": batch_id}),
    }
    fields = {
        "merge_result (manifest + items)": merge_result,
        "merge_result.recovered (every item recovered)": items,
        "failed_items / missing_items / recovered_items / completed_without_write (each, worst)": items,
        "scheduled_items (a repair batch's schedule)": items,
        "only_items (a repair of every item)": items,
        "kept_previous_items (capped at 1,000)": {i: batch_id for i in items[:1000]},
        "progress_shard_items": shard_sizes(items),
        "pinned manifest: manifest": manifest,
        "date: repaired_items": items,
    }
    return {"docs": docs, "fields": fields}  # type: ignore[return-value]


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
    print("\n| document | bytes | fits 1 MiB | index entries if nothing exempted |\n|---|---:|---|---:|")
    for name, (path, fields) in built["docs"].items():
        b = doc_size(path, fields)
        print(f"| {name} | {b:,} | {'yes' if b <= MIB else 'NO'} | {entries(fields):,} |")
    item_bytes = size("p" * (a.item_id_len - 1)) + size("0" * 32)
    print(f"\nthe manifest costs {item_bytes} bytes and 2 index entries per item: a document holding it passes "
          f"1 MiB at ~{MIB // item_bytes:,} items and 40,000 entries at {INDEX_LIMIT // 2:,} items")


if __name__ == "__main__":
    main()
