"""Pinned manifests in BigQuery: which write of each item a MERGE attempt merges (issue 15).

A MERGE attempt's manifest used to be a map in Firestore (the pinned-manifest document, then the batch
document's `merge_result`) and a query parameter of the MERGE: ~45 bytes per item, so a batch past
~15,000 items could neither be pinned nor recorded (1 MiB per document, 40,000 index entries), and a
parameter of 100,000 entries brushes BigQuery's 10 MB request limit. Now the rows of a pin go to ONE
shared table, `<main dataset>.batchline_manifests` (schema.MANIFEST_TABLE_COLUMNS), through the
Storage Write API (no job, no query), and the MERGE, its counts and its verification join it by
(batch, pin). What stays in Firestore is small and fixed-size: the pin id and its counts.

A pin is written before the Firestore pin document names it (state.BatchStore.pin_manifest: the first
writer wins), so a pin document always names rows that exist; rows of a pin that lost that race, or of
a holder that died before naming them, are never read. Rows are kept MANIFEST_RETENTION_DAYS (the
partition expiration infra declares), so an audit months later still knows what a batch merged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from google.cloud import bigquery

from batchline.adapters import staging
from batchline.domain import ids
from batchline.domain.schema import MANIFEST_TABLE
from batchline.settings import Settings

MERGE, SCHEDULED = "merge", "scheduled"
CHUNK_ROWS = 10_000  # rows per AppendRows request: ~1 MB, well under the API's 10 MB per request


def rows(batch_id: str, pin: str, manifest: dict[str, str], recovered: Iterable[str], scheduled: Iterable[str],
         now: dt.datetime) -> list[dict]:
    """The rows of one pin: a `merge` row per item (its write, whether recovered), a `scheduled` row per
    item on the batch's schedule (whose rows the MERGE may deactivate: consolidate.merge_sql)."""
    ids.validate_batch_id(batch_id)
    ids.validate_pin(pin)
    rec, at = set(recovered), now.isoformat()
    out = [{"manifest_batch_id": batch_id, "manifest_pin": pin, "manifest_kind": MERGE,
            "manifest_item_id": ids.validate_item_id(i), "manifest_write_id": ids.validate_write_id(w),
            "manifest_recovered": i in rec, "pinned_at": at} for i, w in sorted(manifest.items())]
    out += [{"manifest_batch_id": batch_id, "manifest_pin": pin, "manifest_kind": SCHEDULED,
             "manifest_item_id": ids.validate_item_id(i), "manifest_write_id": None, "manifest_recovered": None,
             "pinned_at": at} for i in sorted(set(scheduled))]
    return out


def write(bq: bigquery.Client, appender, settings: Settings, pin_rows: list[dict]) -> int:
    """Append a pin's rows, CHUNK_ROWS per request; returns how many. Each request is acknowledged (or
    raises) before the next, so a pin document is only ever written after all of its rows are durable."""
    table_id = settings.manifest_table_id
    schema = staging.live_schema(bq, table_id)
    for start in range(0, len(pin_rows), CHUNK_ROWS):
        appender.append(table_id, schema, pin_rows[start:start + CHUNK_ROWS])
    return len(pin_rows)


def _ref(settings: Settings) -> str:
    return f"`{ids.validate_project(settings.project)}.{ids.validate_dataset(settings.main_dataset)}.{MANIFEST_TABLE}`"


def items_sql(settings: Settings, kind: str = MERGE) -> str:
    """The items of the pin @pin of batch @batch_id, of one kind: a subquery of the MERGE and its checks."""
    if kind not in (MERGE, SCHEDULED):
        raise ValueError(f"unknown manifest kind {kind!r}")
    return (f"SELECT manifest_item_id FROM {_ref(settings)} WHERE manifest_batch_id = @batch_id "
            f"AND manifest_pin = @pin AND manifest_kind = '{kind}'")


def join_sql(settings: Settings, staging_alias: str = "S") -> str:
    """JOIN clause restricting a batch staging table (as `staging_alias`) to the pin's merge writes."""
    return (f"JOIN {_ref(settings)} M ON M.manifest_item_id = {staging_alias}.{staging.ITEM_COLUMN} "
            f"AND M.manifest_write_id = {staging_alias}.{staging.WRITE_COLUMN} AND M.manifest_batch_id = @batch_id "
            f"AND M.manifest_pin = @pin AND M.manifest_kind = '{MERGE}'")


def read_sql(settings: Settings) -> str:
    return (f"SELECT manifest_pin AS pin, manifest_item_id AS item_id, manifest_write_id AS write_id, "
            f"manifest_recovered AS recovered FROM {_ref(settings)} WHERE manifest_batch_id = @batch_id "
            f"AND manifest_pin IN UNNEST(@pins) AND manifest_kind = '{MERGE}'")


def read(bq: bigquery.Client, settings: Settings, batch_id: str, pins: Iterable[str]) -> dict[str, dict[str, str]]:
    """pin -> item -> write id of the merge rows of each of the batch's `pins` (one query)."""
    asked = sorted({ids.validate_pin(p) for p in pins if p})
    if not asked:
        return {}
    job = bq.query_and_wait(read_sql(settings), job_config=bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("batch_id", "STRING", ids.validate_batch_id(batch_id)),
        bigquery.ArrayQueryParameter("pins", "STRING", asked)]))
    out: dict[str, dict[str, str]] = {p: {} for p in asked}
    for r in job:
        out[r["pin"]][r["item_id"]] = r["write_id"]
    return out


def merged_items(bq: bigquery.Client, settings: Settings, batch_id: str, pins: Iterable[str]) -> set[str]:
    """Items the given pins of the batch merged (a recorded consolidation's pin and its orphan merges')."""
    return {i for m in read(bq, settings, batch_id, pins).values() for i in m}
