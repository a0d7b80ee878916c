"""Staging tables: one per batch run and item, created from the main table's live schema (F5, F7).

The write is a load job with WRITE_TRUNCATE, so a redelivered work message replaces the table's rows
instead of appending to them, and a load job is atomic: a staging table is either absent or whole.
The row count is read back before anyone is told the write succeeded (F1).
"""

from __future__ import annotations

import io
import json
import threading
import time

from google.cloud import bigquery

from batchline import ids

_SCHEMA_TTL_S = 60.0
_schema_cache: dict[str, tuple[float, list[bigquery.SchemaField]]] = {}
_schema_lock = threading.Lock()


class StagingWriteError(RuntimeError):
    """The staging table does not hold exactly the rows we wrote."""


def live_schema(bq: bigquery.Client, table_id: str) -> list[bigquery.SchemaField]:
    """The main table's schema as BigQuery has it now (cached for a minute per process), so a
    column added to the main table reaches new staging tables without a redeploy."""
    with _schema_lock:
        hit = _schema_cache.get(table_id)
        if hit and time.monotonic() - hit[0] < _SCHEMA_TTL_S:
            return hit[1]
    schema = list(bq.get_table(table_id).schema)
    with _schema_lock:
        _schema_cache[table_id] = (time.monotonic(), schema)
    return schema


def write_staging(bq: bigquery.Client, table_id: str, rows: list[dict],
                  schema: list[bigquery.SchemaField]) -> int:
    """Replace the staging table's contents with `rows`; return the verified row count."""
    ids.validate_table_name(table_id.rsplit(".", 1)[-1])
    payload = "".join(json.dumps(r, default=str, separators=(",", ":")) + "\n" for r in rows).encode()
    config = bigquery.LoadJobConfig(
        schema=schema,
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
    )
    # No `size`: the client then uses a resumable upload, which bqemulator accepts.
    job = bq.load_table_from_file(io.BytesIO(payload), table_id, job_config=config)
    job.result()
    if job.errors:
        raise StagingWriteError(f"load into {table_id} reported errors: {job.errors[:3]}")
    count = count_rows(bq, table_id)
    if count != len(rows):
        raise StagingWriteError(f"{table_id} holds {count} rows after loading {len(rows)}")
    return count


def count_rows(bq: bigquery.Client, table_id: str) -> int:
    """COUNT(*) by query: table metadata (num_rows) can lag behind a just-finished load."""
    project, dataset, table = table_id.split(".")
    ref = ".".join((ids.validate_project(project), ids.validate_dataset(dataset),
                    ids.validate_table_name(table)))
    rows = list(bq.query(f"SELECT COUNT(*) AS n FROM `{ref}`").result())
    return int(rows[0]["n"])
