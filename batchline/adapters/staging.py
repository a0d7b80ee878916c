"""The batch staging table: ONE table per batch run, created at dispatch from the main table's live
schema (F5, F7), written by workers through the Storage Write API default stream.

Every delivery attempt of a work item appends its rows in one AppendRows request, tagged with the item
id and a write id of its own (`STAGING_COLUMNS`). An acknowledged append is durable, so a worker
reports success only after it (F1). A redelivered or abandoned attempt leaves rows under another write
id; the coordinator records the write id each completion names, and consolidation merges only the
(item, write id) pairs of that manifest, plus one complete write of an item whose completion was lost
(the rows, not the event, are the evidence). So exactly-once comes from the manifest, not from the
table: appends themselves are at-least-once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import bigquery

from batchline.domain import ids
from batchline.domain.errors import StagingTableMissing
from batchline.domain.evidence import Staged, StagedWrite
from batchline.domain.item_shape import PAIRS_SQL
from batchline.settings import Settings

ITEM_COLUMN = "staging_item_id"
WRITE_COLUMN = "staging_write_id"
STAGING_COLUMNS = (ITEM_COLUMN, WRITE_COLUMN)

LIST_CAP = 200_000  # tables one listing of a staging dataset may return (list_all_tables)
_SCHEMA_TTL_S = 60.0
_schema_cache: dict[str, tuple[float, list[bigquery.SchemaField]]] = {}
_schema_lock = threading.Lock()


def live_schema(bq: bigquery.Client, table_id: str) -> list[bigquery.SchemaField]:
    """A table's schema as BigQuery has it now, cached for a minute per process: workers append to
    their batch table with it, without a `tables.get` per item."""
    with _schema_lock:
        hit = _schema_cache.get(table_id)
        if hit and time.monotonic() - hit[0] < _SCHEMA_TTL_S:
            return hit[1]
    try:
        schema = list(bq.get_table(table_id).schema)
    except gexc.NotFound:
        raise StagingTableMissing(f"table {table_id} does not exist") from None
    with _schema_lock:
        _schema_cache[table_id] = (time.monotonic(), schema)
    return schema


def staging_schema(main_schema: list[bigquery.SchemaField]) -> list[bigquery.SchemaField]:
    """The main table's columns plus the item and write id every staged row carries."""
    clash = [f.name for f in main_schema if f.name in STAGING_COLUMNS]
    if clash:
        raise ValueError(f"the main table has columns reserved for staging: {clash}")
    return [*main_schema, bigquery.SchemaField(ITEM_COLUMN, "STRING", mode="REQUIRED"),
            bigquery.SchemaField(WRITE_COLUMN, "STRING", mode="REQUIRED")]


def create_batch_table(bq: bigquery.Client, settings: Settings, batch_id: str) -> str:
    """Create the batch's staging table from the main table's live schema; idempotent (a resumed
    dispatch calls it again). Returns the table name."""
    name = ids.batch_staging_table(batch_id)
    main = list(bq.get_table(settings.main_table_id).schema)
    bq.create_table(bigquery.Table(settings.staging_table_id(name), schema=staging_schema(main)), exists_ok=True)
    return name


def _ref(settings: Settings, batch_id: str) -> str:
    return (f"`{ids.validate_project(settings.project)}.{ids.validate_dataset(settings.staging_dataset)}."
            f"{ids.batch_staging_table(batch_id)}`")


_AGGREGATES = f"COUNT(*) AS n, COUNT(DISTINCT prediction_id) AS k, {PAIRS_SQL} AS pairs"


def writes_sql(settings: Settings, batch_id: str) -> str:
    """Every write in the batch table: item, write id, rows, distinct prediction ids and system/prop
    pairs (its shape, batchline/domain/item_shape.py)."""
    return (f"SELECT {ITEM_COLUMN} AS item_id, {WRITE_COLUMN} AS write_id, {_AGGREGATES} "
            f"FROM {_ref(settings, batch_id)} GROUP BY {ITEM_COLUMN}, {WRITE_COLUMN}")


def staged_writes(bq: bigquery.Client, settings: Settings, batch_id: str) -> Staged:
    """item id -> write id -> what that write staged, from one GROUP BY over the batch table; {} when
    the table does not exist (nothing staged, or dropped after its rows were verified in the main table)."""
    try:
        rows = bq.query_and_wait(writes_sql(settings, batch_id))
    except gexc.NotFound:
        return {}
    out: Staged = {}
    for r in rows:
        w = StagedWrite.of(r)
        out.setdefault(w.item_id, {})[w.write_id] = w
    return out


def batch_table_exists(bq: bigquery.Client, settings: Settings, batch_id: str) -> bool:
    try:
        bq.get_table(settings.staging_table_id(ids.batch_staging_table(batch_id)))
        return True
    except gexc.NotFound:
        return False


def drop_batch_table(bq: bigquery.Client, settings: Settings, batch_id: str) -> int:
    """Drop the batch's staging table once its rows are verified in the main table; 1 if it went."""
    try:
        bq.delete_table(settings.staging_table_id(ids.batch_staging_table(batch_id)))
        return 1
    except gexc.NotFound:
        return 0


def list_all_tables(bq: bigquery.Client, dataset: str) -> list:
    """Every table of a dataset. Real BigQuery pages through `max_results`; bqemulator returns at
    most `max_results` in one page and no token, so the cap is explicit and hitting it is an error
    rather than a silently short list."""
    tables = list(bq.list_tables(dataset, max_results=LIST_CAP))
    if len(tables) >= LIST_CAP:
        raise RuntimeError(f"{dataset} has at least {LIST_CAP} tables; the orphan scan cannot see them all")
    return tables


@dataclass(frozen=True)
class BatchStagingTables:
    """The batch staging tables as the flows see them (Clients.staging): what each write staged, and
    the drop after verification. One seam, so a flow's unit test can hand in its own."""

    bq: bigquery.Client
    settings: Settings

    def writes(self, batch_id: str) -> Staged:
        return staged_writes(self.bq, self.settings, batch_id)

    def drop(self, batch_id: str) -> int:
        return drop_batch_table(self.bq, self.settings, batch_id)
