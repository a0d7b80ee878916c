"""Consolidation: the batch staging table's manifest into the main table with ONE MERGE (F2, F5, F6).

1. Inventory: one GROUP BY over the batch staging table gives every write (item, write id, rows). The
   manifest is the write each completion recorded; an item with staged rows but no usable completion
   (lost, dead-lettered after a durable append) is recovered from one complete write of its own: the
   rows, not the event, are the evidence. Other writes (redelivered or abandoned attempts) are never
   merged. Gaps are recorded and logged, and the batch proceeds with what exists (F9 layer 4).
2. Schema check of the staging table against the main table's live schema: it may lack newer NULLABLE
   columns (selected as typed NULLs); anything else is reported with the column names, before any
   table is touched (F5).
3. One MERGE keyed on the prediction id, with an explicit column list, reading only the manifest's
   (item, write id) pairs, so a re-run updates rows.
4. Verification per item: each merged item's rows now carrying this batch id in the main table must
   equal what its write staged, one per prediction id; a 0-row MERGE with rows staged is a failure (F6).
5. Only then is the staging table dropped, and only if no rows arrived after the inventory.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field

from google.api_core import exceptions as gexc
from google.cloud import bigquery

from batchline.adapters import manifests, staging
from batchline.adapters.staging import ITEM_COLUMN, STAGING_COLUMNS
from batchline.domain import ids
from batchline.domain.accounting import merge_job_id  # the job id format, defined once there
from batchline.domain.errors import ConsolidationError, MergeAttemptFailed, SchemaIncompatible
from batchline.domain.evidence import Inventory, take_inventory
from batchline.domain.schema import MAIN_TABLE_INSERT_ONLY, MAIN_TABLE_KEY, MAIN_TABLE_PARTITION_FIELD
from batchline.settings import Settings


@dataclass
class MergeResult:
    """What one verified MERGE did: counts, fixed-size (what it merged is its pin's rows, manifests.py)."""

    job_id: str
    pin: str
    staged_rows: int
    staged_keys: int
    staged_items: int
    affected_rows: int
    verified_rows: int
    verified_items: int
    verified_systems: int
    timings_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


class _Clock:
    """Seconds per consolidation phase, logged so an operator sees where a slow batch spent its time."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.monotonic()

    def lap(self, name: str) -> float:
        now = time.monotonic()
        self.laps[name] = round(now - self._t, 3)
        self._t = now
        return self.laps[name]


def _qualified(project: str, dataset: str, table: str) -> str:
    return f"`{ids.validate_project(project)}.{ids.validate_dataset(dataset)}.{ids.validate_table_name(table)}`"


def _ident(name: str) -> str:
    return f"`{ids.validate_table_name(name)}`"  # column names follow the same allow-list


def inventory(bq: bigquery.Client, settings: Settings, batch_id: str, items: list[dict]) -> Inventory:
    """What the batch staging table holds against what batch state expects (domain/evidence.py)."""
    ids.validate_batch_id(batch_id)
    return take_inventory(staging.staged_writes(bq, settings, batch_id), items)


def select_lists(main_schema: list[bigquery.SchemaField],
                 staging_schemas: dict[str, dict[str, bigquery.SchemaField]]) -> dict[str, list[str]]:
    """For each staging table, the SELECT expressions that produce the main table's columns in order.

    Raises SchemaIncompatible naming every offending table and column."""
    problems: list[str] = []
    selects: dict[str, list[str]] = {}
    main = {f.name: f for f in main_schema}
    for table, cols in staging_schemas.items():
        exprs: list[str] = []
        extra = sorted(set(cols) - set(main))
        if extra:
            problems.append(f"{table}: columns not in the main table: {', '.join(extra)}")
        for f in main_schema:
            s = cols.get(f.name)
            if s is None:
                if f.mode == "REQUIRED":
                    problems.append(f"{table}: lacks REQUIRED column {f.name}")
                exprs.append(f"CAST(NULL AS {_column_type(f)}) AS {_ident(f.name)}")
            elif _column_type(s) != _column_type(f):
                problems.append(f"{table}: column {f.name} is {_column_type(s)}, main table has {_column_type(f)}")
                exprs.append(_ident(f.name))
            else:
                exprs.append(_ident(f.name))
        selects[table] = exprs
    if problems:
        raise SchemaIncompatible("staging schema incompatible with the main table: " + "; ".join(problems))
    return selects


def _column_type(f: bigquery.SchemaField) -> str:
    """A column's full GoogleSQL type, as a typed NULL needs it: STRUCT<...> of a RECORD's fields,
    ARRAY<...> for mode REPEATED (`CAST(NULL AS STRUCT)` is not valid SQL)."""
    if _sql_type(f.field_type) == "STRUCT":
        t = "STRUCT<{}>".format(", ".join(f"{_ident(sub.name)} {_column_type(sub)}" for sub in f.fields))
    else:
        t = _sql_type(f.field_type)
    return f"ARRAY<{t}>" if f.mode == "REPEATED" else t


_TYPE_ALIASES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "NUMERIC": "NUMERIC",
                 "RECORD": "STRUCT"}


def _sql_type(t: str) -> str:
    t = t.upper()
    t = _TYPE_ALIASES.get(t, t)
    if not t.isalnum():
        raise SchemaIncompatible(f"unsupported column type {t!r}")
    return t


def source_sql(settings: Settings, batch_id: str, exprs: list[str]) -> str:
    """The MERGE source: the pinned manifest's writes of the batch staging table (joined on the manifest
    table, batchline/adapters/manifests.py), as the main table's columns."""
    return "SELECT {} FROM {} S {} WHERE S.game_date = @game_date AND S.batch_id = @batch_id".format(
        ", ".join(exprs), _qualified(settings.project, settings.staging_dataset, ids.batch_staging_table(batch_id)),
        manifests.join_sql(settings))


def staged_items_sql(settings: Settings, batch_id: str) -> str:
    """What the MERGE source holds per item: rows, distinct prediction ids."""
    return (f"SELECT S.{ITEM_COLUMN} AS item_id, COUNT(*) AS n, COUNT(DISTINCT S.prediction_id) AS k FROM "
            f"{_qualified(settings.project, settings.staging_dataset, ids.batch_staging_table(batch_id))} S "
            f"{manifests.join_sql(settings)} WHERE S.game_date = @game_date AND S.batch_id = @batch_id "
            f"GROUP BY S.{ITEM_COLUMN}")


def merge_sql(settings: Settings, main_schema: list[bigquery.SchemaField], source: str,
              updatable: set[str]) -> str:
    """The one mutating statement on the main table per batch.

    Matched rows are updated and new ones inserted; and, in the same statement, the date's active rows
    this batch replaces are deactivated: rows of the players it merged that it did not write again
    (the player changed game, a system stopped predicting), and rows of players no longer on the
    schedule. Players the batch did not merge keep their rows (docs/failures.md). Both lists are the
    pin's rows in the manifest table (batchline/adapters/manifests.py), never query parameters, so the statement's
    size does not grow with the batch.

    Every clause that can touch a main-table row names the date's partition with a constant (the
    @target_date parameter): the ON condition and the NOT MATCHED BY SOURCE condition. So BigQuery
    reads and rewrites the batch's one partition, not the table's whole history (docs/staging.md,
    "What each statement scans"). The prediction id is derived from the date, so no row of another
    date could have matched."""
    cols = [f.name for f in main_schema]
    on = " AND ".join([*(f"T.{_ident(k)} = S.{_ident(k)}" for k in MAIN_TABLE_KEY),
                       f"T.{_ident(MAIN_TABLE_PARTITION_FIELD)} = @target_date"])
    sets = ", ".join(f"{_ident(c)} = S.{_ident(c)}" for c in cols
                     if c in updatable and c not in MAIN_TABLE_KEY and c not in MAIN_TABLE_INSERT_ONLY)
    col_list = ", ".join(_ident(c) for c in cols)
    values = ", ".join(f"S.{_ident(c)}" for c in cols)
    return (
        f"MERGE {_qualified(settings.project, settings.main_dataset, settings.main_table)} T\n"
        f"USING (\n{source}\n) S\nON {on}\n"
        f"WHEN MATCHED THEN UPDATE SET {sets}\n"
        f"WHEN NOT MATCHED THEN INSERT ({col_list}) VALUES ({values})\n"
        f"WHEN NOT MATCHED BY SOURCE AND T.{_ident(MAIN_TABLE_PARTITION_FIELD)} = @target_date AND T.is_active\n"
        f"  AND (T.player_lookup IN ({manifests.items_sql(settings, manifests.MERGE)})\n"
        f"       OR T.player_lookup NOT IN ({manifests.items_sql(settings, manifests.SCHEDULED)}))\n"
        f"  THEN UPDATE SET is_active = FALSE, updated_at = CURRENT_TIMESTAMP()"
    )


def merge_params(batch_id: str, game_date: dt.date, pin: str, source_date: dt.date | None = None) -> list:
    """`source_date` differs from `game_date` only under the zero_merge fault."""
    return [*batch_params(batch_id, source_date or game_date),
            bigquery.ScalarQueryParameter("target_date", "DATE", game_date),
            bigquery.ScalarQueryParameter("pin", "STRING", ids.validate_pin(pin))]


def batch_params(batch_id: str, game_date: dt.date) -> list[bigquery.ScalarQueryParameter]:
    return [bigquery.ScalarQueryParameter("batch_id", "STRING", batch_id),
            bigquery.ScalarQueryParameter("game_date", "DATE", game_date)]


def query_one(bq: bigquery.Client, sql: str, params) -> dict:
    """The single row of a parameterised aggregate query, as a dict."""
    rows = list(bq.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params)).result())
    return dict(rows[0].items())


def is_dml_rate_limit(exc: Exception) -> bool:
    return "Too many DML statements outstanding" in str(exc)


_TRANSIENT_400 = ("Too many DML statements outstanding", "Could not serialize access",
                  "concurrent update", "Resources exceeded", "rateLimitExceeded")


def is_transient(exc: Exception) -> bool:
    """BigQuery answers some passing conditions with HTTP 400 (DML queue full, concurrent update);
    those must be retried, not recorded as a permanent failure."""
    return any(marker.lower() in str(exc).lower() for marker in _TRANSIENT_400)


def run_merge_once(bq: bigquery.Client, sql: str, job_config: bigquery.QueryJobConfig,
                   job_id: str) -> bigquery.QueryJob:
    """Run the MERGE under a deterministic job id, or wait for the job that already has it.

    A consolidation redelivered while its first MERGE still runs (function timeout, lost ack) must
    not start a second mutating statement (F2). BigQuery refuses a duplicate job id with 409; we also
    look the job up first, which covers emulators that do not."""
    try:
        return bq.get_job(job_id)
    except gexc.NotFound:
        pass
    try:
        return bq.query(sql, job_config=job_config, job_id=job_id, job_retry=None)
    except gexc.Conflict:
        return bq.get_job(job_id)


def verify_sql(main: str, only_items: str | None = None) -> str:
    """The batch's rows in the main table per player (= item); `only_items`, a subquery of the pin's
    items (manifests.items_sql), restricts them to those (an orphan merge adds a few items to a batch
    whose other rows were merged before)."""
    return (f"SELECT player_lookup AS item_id, COUNT(*) AS n, COUNT(DISTINCT prediction_id) AS k, "
            f"ARRAY_AGG(DISTINCT system_id) AS systems FROM {main} WHERE game_date = @game_date "
            f"AND batch_id = @batch_id" + (f" AND player_lookup IN ({only_items})" if only_items else "")
            + " GROUP BY player_lookup")


def active_duplicates_sql(main: str) -> str:
    """Active rows beyond one per (player, system, prop) for the date: what a consumer would double count."""
    return (f"SELECT COALESCE(SUM(n - 1), 0) AS dup FROM (SELECT COUNT(*) AS n FROM {main} "
            f"WHERE game_date = @game_date AND is_active GROUP BY player_lookup, system_id, prop_type)")


def kept_previous_sql(main: str) -> str:
    """Players whose active rows for the date come from another batch: rows this batch did not replace."""
    return (f"SELECT player_lookup, MIN(batch_id) AS batch_id FROM {main} WHERE game_date = @game_date "
            f"AND is_active AND batch_id != @batch_id GROUP BY player_lookup ORDER BY player_lookup")


def kept_previous(bq: bigquery.Client, settings: Settings, batch_id: str, game_date: dt.date) -> dict[str, str]:
    """Active rows of the date that an earlier run wrote: player -> the batch that wrote them."""
    rows = bq.query(kept_previous_sql(f"`{settings.main_table_id}`"), job_config=bigquery.QueryJobConfig(
        query_parameters=batch_params(batch_id, game_date))).result()
    return {r["player_lookup"]: r["batch_id"] for r in rows}


def merge_staging(bq: bigquery.Client, settings: Settings, batch_id: str, game_date: dt.date, pin: str,
                  pinned_items: int, *, merge_date: dt.date | None = None, generation: int = 0, attempt: int = 0,
                  fail_transiently: bool = False, pause_in_merge_s: float = 0.0,
                  verify_only_merged: bool = False) -> MergeResult:
    """Check the schema, count what the pinned manifest stages, MERGE once, verify per item. Raises
    ConsolidationError on a permanent failure and MergeAttemptFailed when the job failed transiently;
    lets other API errors propagate (the job may still be running) so the message is redelivered and
    waits for it.

    `pin`: the manifest table's rows naming the write of each item to merge and the batch's schedule
    (batchline/adapters/manifests.py), `pinned_items` how many items it merges. `merge_date` exists only for the
    `zero_merge` fault: a MERGE whose source is filtered on the wrong date affects 0 rows, which the
    verification must catch. `fail_transiently` only for the `merge_transient` fault: this attempt's job
    is a statement that fails, classified as passing. `verify_only_merged` (orphan merges,
    batchline/flows/orphans.py) verifies only the pin's items."""
    clock = _Clock()
    main_schema = list(bq.get_table(settings.main_table_id).schema)
    table = ids.batch_staging_table(batch_id)
    try:
        stg_schema = {f.name: f for f in bq.get_table(settings.staging_table_id(table)).schema
                      if f.name not in STAGING_COLUMNS}
    except gexc.NotFound:
        raise ConsolidationError(f"staging table {table} does not exist; nothing of {pinned_items} "
                                 f"manifest writes can be merged") from None
    params = batch_params(batch_id, game_date)
    pin_param = bigquery.ScalarQueryParameter("pin", "STRING", ids.validate_pin(pin))
    staged = {r["item_id"]: (int(r["n"]), int(r["k"])) for r in bq.query_and_wait(
        staged_items_sql(settings, batch_id), job_config=bigquery.QueryJobConfig(query_parameters=[
            *params, pin_param]))}
    # Every pinned write must be staged whole: one vanished since the inventory would be merged as nothing
    # (the zero_merge fault filters the source on another date on purpose, for the 0-row guard below).
    if len(staged) != pinned_items and merge_date is None:
        raise ConsolidationError(f"the pinned manifest {pin} names {pinned_items} writes; the batch staging "
                                 f"table holds {len(staged)} of them; staging table kept")
    clock.lap("inventory")
    exprs = select_lists(main_schema, {table: stg_schema})[table]
    job_id = merge_job_id(batch_id, generation, attempt)
    if fail_transiently:
        job = run_merge_once(bq, "SELECT ERROR('injected transient MERGE failure')", bigquery.QueryJobConfig(),
                             job_id)
    else:
        job = run_merge_once(bq, merge_sql(settings, main_schema, source_sql(settings, batch_id, exprs),
                                           set(stg_schema)),
                             bigquery.QueryJobConfig(query_parameters=merge_params(batch_id, game_date, pin,
                                                                                   merge_date)), job_id)
    time.sleep(pause_in_merge_s)  # the pause_in_merge fault: the job runs, its waiter may be killed
    try:
        job.result()
    except gexc.GoogleAPICallError as exc:
        _classify_merge_failure(job, exc, injected=fail_transiently)
    clock.lap("merge")
    affected = int(job.num_dml_affected_rows or 0)
    main = _qualified(settings.project, settings.main_dataset, settings.main_table)
    only = manifests.items_sql(settings) if verify_only_merged else None
    in_main = {r["item_id"]: (int(r["n"]), int(r["k"]), set(r["systems"] or ())) for r in bq.query_and_wait(
        verify_sql(main, only), job_config=bigquery.QueryJobConfig(
            query_parameters=[*params, *([pin_param] if only else [])]))}
    active_dups = int(query_one(bq, active_duplicates_sql(main), params)["dup"])
    staged_rows = sum(n for n, _ in staged.values())
    result = MergeResult(
        job_id=job.job_id, pin=pin, staged_rows=staged_rows, staged_keys=sum(k for _, k in staged.values()),
        staged_items=len(staged), affected_rows=affected, verified_rows=sum(v[0] for v in in_main.values()),
        verified_items=len(in_main), verified_systems=len(set().union(*(v[2] for v in in_main.values()))),
        timings_s={**clock.laps, "verify": clock.lap("verify")})
    if staged_rows > 0 and affected == 0:
        raise ConsolidationError(f"MERGE {job.job_id} affected 0 rows while staging holds {staged_rows}; "
                                 f"staging table kept")
    wrong = sorted(i for i in set(staged) | set(in_main)
                   if in_main.get(i, (0, 0))[:2] != (staged.get(i, (0, 0))[0],) * 2)
    if wrong:
        details = ", ".join(f"{i}: staged {staged.get(i, (0, 0))[0]}, main {in_main.get(i, (0, 0))[0]} rows "
                            f"({in_main.get(i, (0, 0))[1]} distinct ids)" for i in wrong[:20])
        raise ConsolidationError(f"verification failed for {len(wrong)} items after MERGE {job.job_id} "
                                 f"({details}); staging table kept")
    if active_dups:
        raise ConsolidationError(f"verification failed: {active_dups} active rows for {game_date} beyond one per "
                                 f"player, system and prop after MERGE {job.job_id}; staging table kept")
    return result


def _classify_merge_failure(job, exc: Exception, *, injected: bool = False) -> None:
    """Always raises: permanent (ConsolidationError), a finished transient failure (MergeAttemptFailed),
    or the original error when the job's fate is unknown (it may still be running)."""
    try:
        job.reload()
    except gexc.GoogleAPICallError:
        raise exc from None
    if getattr(job, "state", None) != "DONE" or not getattr(job, "error_result", None):
        raise exc
    reason = str((job.error_result or {}).get("reason", ""))
    if injected or reason in TRANSIENT_REASONS or is_transient(exc):
        raise MergeAttemptFailed(job.job_id, f"{reason}: {exc}") from exc
    raise ConsolidationError(f"MERGE {job.job_id} rejected by BigQuery: {getattr(exc, 'message', exc)}") from exc


# BigQuery's error reasons for conditions that pass (https://cloud.google.com/bigquery/docs/error-messages).
TRANSIENT_REASONS = frozenset({"backendError", "internalError", "rateLimitExceeded", "jobRateLimitExceeded",
                               "resourcesExceeded", "jobBackendError", "jobInternalError"})
