"""Daily reconciliation (F9 layer 6): the schedule against the main table, whatever happened.

For a date it compares the context table (who should have predictions) with the main table (who has
all prediction systems), lists staging tables that outlived their batch, logs the result as one
structured line that alerts can key on, and re-dispatches a small gap as a new batch of just the
missing items. A large gap is only reported: it needs a human.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from google.api_core import exceptions as gexc
from google.cloud import bigquery

from batchline import ids
from batchline.clients import Clients
from batchline.dispatch import expected_items, start_batch
from batchline.logs import log_event
from batchline.messages import ReconcileRequest, StartRequest
from batchline.schema import PREDICTION_SYSTEMS
from batchline.state import ACTIVE_STATUSES, BatchConflict, BatchStore


@dataclass
class Reconciliation:
    game_date: dt.date
    expected_items: int
    complete_items: int
    incomplete_items: list[str]
    orphaned_staging_tables: list[str]
    redispatched_batch_id: str | None
    action: str

    def as_dict(self) -> dict:
        d = asdict(self)
        d["game_date"] = self.game_date.isoformat()
        return d


def complete_players(clients: Clients, game_date: dt.date) -> set[str]:
    s = clients.settings
    main = f"`{s.project}.{s.main_dataset}.{ids.validate_table_name(s.main_table)}`"
    job = clients.bq.query(
        f"SELECT player_lookup FROM {main} WHERE game_date = @d AND is_active "
        f"GROUP BY player_lookup HAVING COUNT(DISTINCT system_id) >= @systems",
        job_config=bigquery.QueryJobConfig(query_parameters=[
            bigquery.ScalarQueryParameter("d", "DATE", game_date),
            bigquery.ScalarQueryParameter("systems", "INT64", len(PREDICTION_SYSTEMS)),
        ]))
    return {r["player_lookup"] for r in job.result()}


LIST_CAP = 200_000


def list_all_tables(bq: bigquery.Client, dataset: str) -> list:
    """Every table of a dataset. Real BigQuery pages through `max_results`; bqemulator returns at
    most `max_results` in one page and no token, so the cap is explicit and hitting it is an error
    rather than a silently short list."""
    tables = list(bq.list_tables(dataset, max_results=LIST_CAP))
    if len(tables) >= LIST_CAP:
        raise RuntimeError(f"{dataset} has at least {LIST_CAP} tables; the orphan scan cannot see them all")
    return tables


def orphaned_staging_tables(clients: Clients) -> list[str]:
    """Staging tables whose batch is no longer active: evidence nobody will merge by itself."""
    s = clients.settings
    store = BatchStore(clients.fs)
    status_of: dict[str, str | None] = {}
    orphans = []
    for t in list_all_tables(clients.bq, f"{s.project}.{s.staging_dataset}"):
        name = t.table_id
        prefix = next((p for p in (ids.STAGING_PREFIX, ids.COMBINED_PREFIX) if name.startswith(p)), None)
        if prefix is None:
            continue
        batch_id = name[len(prefix):].split("__", 1)[0]
        if batch_id not in status_of:
            try:
                batch = store.get_batch(ids.validate_batch_id(batch_id))
            except ValueError:
                batch = None
            status_of[batch_id] = batch["status"] if batch else None
        if status_of[batch_id] not in ACTIVE_STATUSES:
            orphans.append(name)
    return sorted(orphans)


def reconcile(clients: Clients, req: ReconcileRequest) -> Reconciliation:
    game_date = req.game_date or (clients.settings.today() - dt.timedelta(days=1))
    items, _ = expected_items(clients, game_date)
    expected = {i.item_id for i in items}
    try:
        complete = complete_players(clients, game_date) & expected
    except gexc.NotFound:
        complete = set()
    incomplete = sorted(expected - complete)
    orphans = orphaned_staging_tables(clients)
    redispatched = None
    action = "none"
    if incomplete:
        if len(incomplete) <= req.redispatch_max:
            try:
                redispatched = start_batch(clients, StartRequest(game_date=game_date), only_items=incomplete).batch_id
                action = "redispatched"
            except BatchConflict as exc:
                action = f"batch {exc.batch_id} still {exc.status}; not redispatched"
        else:
            action = "gap_too_large_to_redispatch"
    result = Reconciliation(game_date, len(expected), len(complete), incomplete, orphans, redispatched, action)
    coverage = round(100.0 * len(complete) / len(expected), 2) if expected else 100.0
    log_event("reconciliation_gap" if incomplete or orphans else "reconciliation_ok",
              severity="ERROR" if incomplete or orphans else "INFO", game_date=game_date,
              coverage_pct=coverage, incomplete_items=incomplete[:200], incomplete_count=len(incomplete),
              orphaned_staging_tables=len(orphans), action=action, redispatched_batch_id=redispatched)
    return result
