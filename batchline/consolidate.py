"""Consolidation: every staging table of a batch into the main table with ONE MERGE (F2, F5, F6).

1. Inventory: the staging tables that exist for the batch versus the items batch state expects; a
   gap is recorded and logged, and the batch proceeds with what exists (F9 layer 4). A staging table
   whose completion was lost is still merged: the table, not the event, is the evidence.
2. Schema check against the main table's live schema: a staging table may lack newer NULLABLE
   columns (selected as typed NULLs); anything else is reported with the column names, before any
   table is touched (F5).
3. One MERGE keyed on the prediction id, with an explicit column list, so a re-run updates rows.
   Past MAX_TABLES_PER_STATEMENT staging tables (BigQuery's per-query limits), chunks are first
   combined into scratch tables in the staging dataset; the main table still sees one MERGE.
   The rows staged are summed from the staging tables' metadata (load jobs keep numRows exact; a
   COUNT over a 450-way UNION cost 13 s on the emulator, more than the MERGE itself).
4. Verification: the rows now carrying this batch id in the main table must equal the rows staged,
   one per prediction id; a 0-row MERGE with non-empty staging is a failure (F6).
5. Only then are the staging tables deleted.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from google.api_core import exceptions as gexc
from google.cloud import bigquery

from batchline import ids
from batchline.schema import MAIN_TABLE_INSERT_ONLY, MAIN_TABLE_KEY
from batchline.settings import Settings

# BigQuery allows at most 1,000 tables in one query and 1 MB of query text (~2,500 of our SELECTs).
# Beyond this many staging tables, chunks are first combined into scratch tables in the staging
# dataset (DDL there, never DML on the main table), so the main table still sees exactly one MERGE.
MAX_TABLES_PER_STATEMENT = 500


class ConsolidationError(RuntimeError):
    """A permanent consolidation failure: recorded as the batch's terminal state, tables kept."""


class SchemaIncompatible(ConsolidationError):
    pass


@dataclass
class Inventory:
    tables: dict[str, str]  # item id -> staging table name, for every existing staging table
    expected_completed: list[str]  # items batch state says completed
    missing_tables: list[str]  # completed items whose staging table does not exist
    recovered: list[str]  # items with a staging table but no recorded completion
    failed_items: list[str]
    pending_items: list[str]


@dataclass
class MergeResult:
    job_id: str
    staged_rows: int
    staged_keys: int
    staged_items: int
    affected_rows: int
    verified_rows: int
    verified_items: int
    verified_systems: int
    tables: list[str] = field(default_factory=list)
    scratch_tables: list[str] = field(default_factory=list)
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


def existing_staging_tables(bq: bigquery.Client, settings: Settings, batch_id: str,
                            item_ids: list[str]) -> dict[str, str]:
    """item id -> staging table, for every item of the batch whose staging table exists.

    Asked table by table, by the name the worker must have used: precise, proportional to the batch
    rather than to the dataset, and immune to listing limits (bqemulator truncates tables.list at
    1,000 without a page token, which once hid 200 of 1,200 staging tables from a consolidation)."""
    names = {i: ids.staging_table_name(batch_id, i) for i in item_ids}

    def exists(item: str) -> bool:
        try:
            bq.get_table(settings.staging_table_id(names[item]))
            return True
        except gexc.NotFound:
            return False

    with ThreadPoolExecutor(max_workers=8) as pool:
        found = dict(zip(item_ids, pool.map(exists, item_ids), strict=True))
    return {i: names[i] for i in sorted(item_ids) if found[i]}


def existing_scratch_tables(bq: bigquery.Client, settings: Settings, batch_id: str, n_items: int) -> list[str]:
    """The chunk tables a consolidation of `n_items` may have created and not yet deleted."""
    out = []
    chunks = math.ceil(n_items / MAX_TABLES_PER_STATEMENT) if n_items > MAX_TABLES_PER_STATEMENT else 0
    for n in range(chunks):
        name = ids.combined_table_name(batch_id, n)
        try:
            bq.get_table(settings.staging_table_id(name))
            out.append(name)
        except gexc.NotFound:
            continue
    return out


def inventory(bq: bigquery.Client, settings: Settings, batch_id: str, items: list[dict]) -> Inventory:
    ids.validate_batch_id(batch_id)
    tables = existing_staging_tables(bq, settings, batch_id, [it["item_id"] for it in items])
    by_status: dict[str, list[str]] = {}
    for it in items:
        by_status.setdefault(it["status"], []).append(it["item_id"])
    completed = sorted(by_status.get("completed", []))
    return Inventory(
        tables=tables,
        expected_completed=completed,
        missing_tables=[i for i in completed if i not in tables],
        recovered=sorted(i for i in tables if i not in set(completed)),
        failed_items=sorted(by_status.get("failed", [])),
        pending_items=sorted(by_status.get("pending", [])),
    )


def _metadata(bq: bigquery.Client, table_id: str) -> tuple[dict[str, bigquery.SchemaField], int]:
    """Schema and row count of a staging table. Staging tables are only ever written by load jobs,
    whose numRows is exact once the job is done (it is DML that leaves it stale)."""
    table = bq.get_table(table_id)
    return {f.name: f for f in table.schema}, int(table.num_rows or 0)


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


def source_sql(settings: Settings, selects: dict[str, list[str]]) -> str:
    parts = [
        "SELECT {} FROM {} WHERE game_date = @game_date AND batch_id = @batch_id".format(
            ", ".join(exprs), _qualified(settings.project, settings.staging_dataset, table))
        for table, exprs in selects.items()
    ]
    return "\nUNION ALL\n".join(parts)


def merge_sql(settings: Settings, main_schema: list[bigquery.SchemaField], source: str,
              updatable: set[str]) -> str:
    """The one mutating statement on the main table per batch.

    Matched rows are updated and new ones inserted; and, in the same statement, the date's active rows
    this batch replaces are deactivated: rows of the players it merged that it did not write again
    (the player changed game, a system stopped predicting), and rows of players no longer on the
    schedule (@scheduled_items). Players the batch did not merge keep their rows (docs/failures.md)."""
    cols = [f.name for f in main_schema]
    on = " AND ".join(f"T.{_ident(k)} = S.{_ident(k)}" for k in MAIN_TABLE_KEY)
    sets = ", ".join(f"{_ident(c)} = S.{_ident(c)}" for c in cols
                     if c in updatable and c not in MAIN_TABLE_KEY and c not in MAIN_TABLE_INSERT_ONLY)
    col_list = ", ".join(_ident(c) for c in cols)
    values = ", ".join(f"S.{_ident(c)}" for c in cols)
    return (
        f"MERGE {_qualified(settings.project, settings.main_dataset, settings.main_table)} T\n"
        f"USING (\n{source}\n) S\nON {on}\n"
        f"WHEN MATCHED THEN UPDATE SET {sets}\n"
        f"WHEN NOT MATCHED THEN INSERT ({col_list}) VALUES ({values})\n"
        f"WHEN NOT MATCHED BY SOURCE AND T.game_date = @target_date AND T.is_active\n"
        f"  AND (T.player_lookup IN UNNEST(@merged_items) OR T.player_lookup NOT IN UNNEST(@scheduled_items))\n"
        f"  THEN UPDATE SET is_active = FALSE, updated_at = CURRENT_TIMESTAMP()"
    )


def merge_params(batch_id: str, game_date: dt.date, merged_items: list[str], scheduled_items: list[str],
                 source_date: dt.date | None = None) -> list:
    """`source_date` differs from `game_date` only under the zero_merge fault."""
    return [*batch_params(batch_id, source_date or game_date),
            bigquery.ScalarQueryParameter("target_date", "DATE", game_date),
            bigquery.ArrayQueryParameter("merged_items", "STRING", sorted(merged_items)),
            bigquery.ArrayQueryParameter("scheduled_items", "STRING", sorted(scheduled_items))]


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


def combine_chunks(bq: bigquery.Client, settings: Settings, batch_id: str, main_schema: list[bigquery.SchemaField],
                   selects: dict[str, list[str]], params: list, chunk: int) -> dict[str, list[str]]:
    """Copy each chunk of staging tables into one scratch table (main table's columns, this batch's
    rows only) and return the select lists that read the scratch tables instead."""
    names = list(selects)
    combined: dict[str, list[str]] = {}
    for n, start in enumerate(range(0, len(names), chunk)):
        name = ids.combined_table_name(batch_id, n)
        part = {t: selects[t] for t in names[start:start + chunk]}
        bq.query(f"CREATE OR REPLACE TABLE {_qualified(settings.project, settings.staging_dataset, name)} AS\n"
                 f"{source_sql(settings, part)}",
                 job_config=bigquery.QueryJobConfig(query_parameters=params)).result()
        combined[name] = [_ident(f.name) for f in main_schema]
    return combined


def merge_job_id(batch_id: str, generation: int = 0, attempt: int = 0) -> str:
    """One job id per (generation, attempt): a redelivery waits for the job of the current attempt;
    only an attempt known to have failed is followed by the next one (lifecycle.decide_next_merge_attempt)."""
    return f"batchline_merge_{ids.validate_batch_id(batch_id)}_g{int(generation)}_a{int(attempt)}"


class MergeAttemptFailed(RuntimeError):
    """The MERGE job of this attempt finished with a passing error (BigQuery says DONE, with an error
    it classifies as retryable): no row changed, and the next attempt may run under a new job id."""

    def __init__(self, job_id: str, error: str):
        super().__init__(f"MERGE {job_id} failed transiently: {error}")
        self.job_id = job_id


def verify_sql(main: str, only_items: bool = False) -> str:
    """The batch's rows in the main table; `only_items` restricts them to @verify_items (an orphan merge
    adds a few items to a batch whose other rows were merged before)."""
    return (f"SELECT COUNT(*) AS n, COUNT(DISTINCT prediction_id) AS k, COUNT(DISTINCT player_lookup) AS p, "
            f"COUNT(DISTINCT system_id) AS s FROM {main} WHERE game_date = @game_date AND batch_id = @batch_id"
            + (" AND player_lookup IN UNNEST(@verify_items)" if only_items else ""))


def active_duplicates_sql(main: str) -> str:
    """Active rows beyond one per (player, system, prop) for the date: what a consumer would double count."""
    return (f"SELECT COALESCE(SUM(n - 1), 0) AS dup FROM (SELECT COUNT(*) AS n FROM {main} "
            f"WHERE game_date = @game_date AND is_active GROUP BY player_lookup, system_id, prop_type)")


def kept_previous_sql(main: str) -> str:
    """Players whose active rows for the date come from another batch: rows this batch did not replace."""
    return (f"SELECT player_lookup, MIN(batch_id) AS batch_id FROM {main} WHERE game_date = @game_date "
            f"AND is_active AND batch_id != @batch_id GROUP BY player_lookup ORDER BY player_lookup")


def merge_staging(bq: bigquery.Client, settings: Settings, batch_id: str, game_date: dt.date,
                  tables: list[str], *, scheduled_items: list[str] | None = None, merge_date: dt.date | None = None,
                  chunk: int = MAX_TABLES_PER_STATEMENT, generation: int = 0, attempt: int = 0,
                  fail_transiently: bool = False, pause_in_merge_s: float = 0.0,
                  verify_only_merged: bool = False) -> MergeResult:
    """Check schemas, count what is staged, MERGE once, verify. Raises ConsolidationError on a
    permanent failure and MergeAttemptFailed when the job failed transiently; lets other API errors
    propagate (the job may still be running) so the message is redelivered and waits for it.

    `merge_date` exists only for the `zero_merge` fault: a MERGE whose source is filtered on the
    wrong date affects 0 rows, which the verification must catch. `fail_transiently` only for the
    `merge_transient` fault: this attempt's job is a statement that fails, classified as passing.
    `verify_only_merged` (orphan merges, batchline/orphans.py) verifies only the items of `tables`."""
    clock = _Clock()
    main_id = settings.main_table_id
    main_schema = list(bq.get_table(main_id).schema)
    with ThreadPoolExecutor(max_workers=8) as pool:
        meta = dict(zip(tables, pool.map(lambda t: _metadata(bq, settings.staging_table_id(t)), tables),
                        strict=True))
    schemas = {t: m[0] for t, m in meta.items()}
    staged = {"n": sum(m[1] for m in meta.values()), "p": sum(1 for m in meta.values() if m[1] > 0)}
    merged_items = sorted(i for t in tables if (i := ids.item_of_staging_table(batch_id, t)))
    clock.lap("schema_check")
    selects = select_lists(main_schema, schemas)
    updatable = {c for cols in schemas.values() for c in cols}
    params = batch_params(batch_id, game_date)
    scratch: list[str] = []
    if len(selects) > chunk:
        selects = combine_chunks(bq, settings, batch_id, main_schema, selects, params, chunk)
        scratch = list(selects)
        clock.lap("combine_chunks")
    source = source_sql(settings, selects)
    job_id = merge_job_id(batch_id, generation, attempt)
    if fail_transiently:
        job = run_merge_once(bq, "SELECT ERROR('injected transient MERGE failure')", bigquery.QueryJobConfig(),
                             job_id)
    else:
        job = run_merge_once(bq, merge_sql(settings, main_schema, source, updatable),
                             bigquery.QueryJobConfig(query_parameters=merge_params(
                                 batch_id, game_date, merged_items,
                                 merged_items if scheduled_items is None else scheduled_items, merge_date)), job_id)
    time.sleep(pause_in_merge_s)  # the pause_in_merge fault: the job runs, its waiter may be killed
    try:
        job.result()
    except gexc.GoogleAPICallError as exc:
        _classify_merge_failure(job, exc, injected=fail_transiently)
    clock.lap("merge")
    affected = int(job.num_dml_affected_rows or 0)
    main = _qualified(settings.project, settings.main_dataset, settings.main_table)
    only = [bigquery.ArrayQueryParameter("verify_items", "STRING", merged_items)] if verify_only_merged else []
    verified = query_one(bq, verify_sql(main, verify_only_merged), [*params, *only])
    active_dups = int(query_one(bq, active_duplicates_sql(main), params)["dup"])
    result = MergeResult(job_id=job.job_id, staged_rows=staged["n"], staged_keys=verified["k"],
                         staged_items=staged["p"], affected_rows=affected, verified_rows=verified["n"],
                         verified_items=verified["p"], verified_systems=verified["s"], tables=list(tables),
                         scratch_tables=scratch,
                         timings_s={**clock.laps, "verify": clock.lap("verify")})
    if staged["n"] > 0 and affected == 0:
        raise ConsolidationError(f"MERGE {job.job_id} affected 0 rows while staging holds "
                                 f"{staged['n']}; staging tables kept")
    if verified["n"] != staged["n"] or verified["k"] != verified["n"] or verified["p"] != staged["p"]:
        raise ConsolidationError(f"verification failed: main table has {verified['n']} rows "
                                 f"({verified['k']} distinct ids) / {verified['p']} players for the batch, "
                                 f"staging had {staged['n']} rows / {staged['p']} players; staging tables kept")
    if active_dups:
        raise ConsolidationError(f"verification failed: {active_dups} active rows for {game_date} beyond one per "
                                 f"player, system and prop after MERGE {job.job_id}; staging tables kept")
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


def delete_tables(bq: bigquery.Client, settings: Settings, tables: list[str]) -> int:
    """Delete staging tables whose rows were verified in the main table; returns how many went."""
    def drop(t: str) -> int:
        try:
            bq.delete_table(settings.staging_table_id(t))
            return 1
        except gexc.NotFound:
            return 0  # already gone (a redelivered consolidation)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return sum(pool.map(drop, tables))
