"""The consolidation's SQL text: the MERGE (one mutating statement per batch), its source over the
pinned manifest, the per-item verification and the checks around it. Identifiers pass the one
allow-list (batchline/domain/ids.py); every value is a query parameter (merge_params, batch_params)."""

from __future__ import annotations

import datetime as dt

from google.cloud import bigquery

from batchline.adapters import manifests
from batchline.adapters.staging import ITEM_COLUMN
from batchline.domain import ids
from batchline.domain.errors import SchemaIncompatible
from batchline.domain.schema import MAIN_TABLE_INSERT_ONLY, MAIN_TABLE_KEY, MAIN_TABLE_PARTITION_FIELD
from batchline.settings import Settings


def qualified(project: str, dataset: str, table: str) -> str:
    return f"`{ids.validate_project(project)}.{ids.validate_dataset(dataset)}.{ids.validate_table_name(table)}`"


def _ident(name: str) -> str:
    return f"`{ids.validate_table_name(name)}`"  # column names follow the same allow-list


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
        ", ".join(exprs), qualified(settings.project, settings.staging_dataset, ids.batch_staging_table(batch_id)),
        manifests.join_sql(settings))


def staged_items_sql(settings: Settings, batch_id: str) -> str:
    """What the MERGE source holds per item: rows, distinct prediction ids."""
    return (f"SELECT S.{ITEM_COLUMN} AS item_id, COUNT(*) AS n, COUNT(DISTINCT S.prediction_id) AS k FROM "
            f"{qualified(settings.project, settings.staging_dataset, ids.batch_staging_table(batch_id))} S "
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
        f"MERGE {qualified(settings.project, settings.main_dataset, settings.main_table)} T\n"
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
