"""The read-only BigQuery questions flows ask of the context and main tables, one function each, so no
flow builds SQL or a job config. Every value is a query parameter; tests/sql judges each statement."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import bigquery

from batchline.adapters.merge import query_one
from batchline.adapters.merge_sql import active_duplicates_sql, batch_params
from batchline.domain import ids
from batchline.domain.errors import MainTableMissing
from batchline.domain.item_shape import PAIRS_SQL, Shape
from batchline.settings import Settings


def _on_date(bq: bigquery.Client, sql: str, game_date: dt.date) -> list:
    """The rows of `sql`, whose one parameter @d is the date."""
    return list(bq.query(sql, job_config=bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("d", "DATE", game_date)])).result())


# -- the context table: the schedule -----------------------------------------------------------------
def schedule_sql(context_table_id: str) -> str:
    return (f"SELECT player_lookup, game_id FROM `{context_table_id}` WHERE game_date = @d "
            f"ORDER BY player_lookup, game_id")


def schedule_rows(bq: bigquery.Client, s: Settings, game_date: dt.date) -> list[tuple[object, object]]:
    """The date's context rows as (player_lookup, game_id), unvalidated: a start judges each."""
    ids.validate_table_name(s.context_table)
    return [(r["player_lookup"], r["game_id"]) for r in _on_date(bq, schedule_sql(s.context_table_id), game_date)]


def scheduled_players_sql(context_table_id: str) -> str:
    return f"SELECT DISTINCT player_lookup FROM `{context_table_id}` WHERE game_date = @d"


def scheduled_players(bq: bigquery.Client, s: Settings, game_date: dt.date) -> set[str]:
    return {r["player_lookup"] for r in _on_date(bq, scheduled_players_sql(s.context_table_id), game_date)}


# -- the main table: what landed -----------------------------------------------------------------------
@dataclass(frozen=True)
class PlayerBatchRows:
    """One player's rows of the date from one batch: their shape (item_shape.py), how many are active."""

    player: str
    batch_id: str
    shape: Shape
    active: int


def rows_sql(main_table_id: str) -> str:
    """The date's rows per player and batch: their shape (item_shape.py) and how many are active."""
    return (f"SELECT player_lookup, batch_id, COUNT(*) AS n, COUNT(DISTINCT prediction_id) AS k, "
            f"{PAIRS_SQL} AS pairs, COUNTIF(is_active) AS active FROM `{main_table_id}` WHERE game_date = @d "
            f"GROUP BY player_lookup, batch_id")


def rows_by_player_and_batch(bq: bigquery.Client, s: Settings, game_date: dt.date) -> list[PlayerBatchRows]:
    return [PlayerBatchRows(r["player_lookup"], r["batch_id"], Shape.of(r["n"], r["k"], r["pairs"]), int(r["active"]))
            for r in _on_date(bq, rows_sql(s.main_table_id), game_date)]


def duplicate_ids_sql(main_table_id: str) -> str:
    return f"SELECT COUNT(*) AS n, COUNT(DISTINCT prediction_id) AS k FROM `{main_table_id}` WHERE game_date = @d"


def duplicate_prediction_ids(bq: bigquery.Client, s: Settings, game_date: dt.date) -> int:
    """Rows of the date beyond one per prediction id."""
    dup = _on_date(bq, duplicate_ids_sql(s.main_table_id), game_date)[0]
    return int(dup["n"]) - int(dup["k"])


def active_duplicates(bq: bigquery.Client, s: Settings, batch_id: str, game_date: dt.date) -> int:
    """Active rows of the date beyond one per (player, system, prop)."""
    return int(query_one(bq, active_duplicates_sql(f"`{s.main_table_id}`"), batch_params(batch_id, game_date))["dup"])


def complete_sql(main: str) -> str:
    """The date's active rows per player, as item_shape.py judges them."""
    return (f"SELECT player_lookup, COUNT(*) AS n, COUNT(DISTINCT prediction_id) AS k, {PAIRS_SQL} AS pairs "
            f"FROM {main} WHERE game_date = @d AND is_active GROUP BY player_lookup")


def active_shapes(bq: bigquery.Client, s: Settings, game_date: dt.date) -> dict[str, Shape]:
    """Each player's active rows of the date, by shape; MainTableMissing when there is no main table."""
    main = f"`{s.project}.{s.main_dataset}.{ids.validate_table_name(s.main_table)}`"
    try:
        rows = _on_date(bq, complete_sql(main), game_date)
    except gexc.NotFound as exc:
        raise MainTableMissing(str(exc)) from exc
    return {r["player_lookup"]: Shape.of(r["n"], r["k"], r["pairs"]) for r in rows}


def active_owners_sql(main_table_id: str) -> str:
    return (f"SELECT player_lookup, batch_id FROM `{main_table_id}` WHERE game_date = @d AND is_active "
            f"GROUP BY player_lookup, batch_id")


def active_owners(bq: bigquery.Client, s: Settings, game_date: dt.date) -> dict[str, set[str]]:
    """player -> the batches whose rows are the player's active rows for the date."""
    owners: dict[str, set[str]] = {}
    for r in _on_date(bq, active_owners_sql(s.main_table_id), game_date):
        owners.setdefault(r["player_lookup"], set()).add(r["batch_id"])
    return owners
