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

from batchline.adapters import manifests
from batchline.adapters.merge_sql import (
    active_duplicates_sql,
    batch_params,
    kept_previous_sql,
    merge_params,
    merge_sql,
    qualified,
    select_lists,
    source_sql,
    staged_items_sql,
    verify_sql,
)
from batchline.adapters.staging import STAGING_COLUMNS
from batchline.domain import ids
from batchline.domain.accounting import merge_job_id  # the job id format, defined once there
from batchline.domain.errors import ConsolidationError, MergeAttemptFailed
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
    only = manifests.items_sql(settings) if verify_only_merged else None
    params_verify = [*params, *([pin_param] if only else [])]
    return _verify(bq, settings, job, pin, staged, game_date, params, params_verify, only, clock)


def _verify(bq: bigquery.Client, settings: Settings, job, pin: str, staged: dict[str, tuple[int, int]],
            game_date: dt.date, params: list, params_verify: list, only: str | None, clock: _Clock) -> MergeResult:
    """After the MERGE: each merged item's rows in the main table, one per prediction id, equal to what its
    write staged; a 0-row MERGE with rows staged, or any active duplicate for the date, is a failure (F6)."""
    affected = int(job.num_dml_affected_rows or 0)
    main = qualified(settings.project, settings.main_dataset, settings.main_table)
    in_main = {r["item_id"]: (int(r["n"]), int(r["k"]), set(r["systems"] or ())) for r in bq.query_and_wait(
        verify_sql(main, only), job_config=bigquery.QueryJobConfig(query_parameters=params_verify))}
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
