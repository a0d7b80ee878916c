"""Start only on fresh inputs: the context rows of the date must have been loaded recently.

The pipeline we replace started because an upstream "done" event arrived, not because the data was
there; a late or failed load then produced a whole day of predictions from yesterday's schedule. A
start (not a repair of a date whose inputs were accepted already) therefore asks the context table
when the date's rows were loaded (`loaded_at`, filled by the loader) and refuses with StaleInputs,
answered 424 (batchline/http.py) and alerted on (`start_refused_stale_inputs`), when the newest load
is older than BATCHLINE_CONTEXT_MAX_AGE_HOURS (0 disables the check). Rows without a load time count
as stale: nobody can say they are fresh.

Why a column and not the table's `modified` time: the question is per date (the table holds every
date), and bqemulator never advances `modified` on load jobs or DML (measured), so the local stack
could not exercise a metadata-based check at all.
"""

from __future__ import annotations

import datetime as dt

from google.cloud import bigquery

from batchline.adapters.clients import Clients
from batchline.domain import ids
from batchline.domain.errors import StaleInputs


def freshness_sql(context_table_id: str) -> str:
    return (f"SELECT COUNT(*) AS n, MAX(loaded_at) AS newest FROM `{context_table_id}` "
            f"WHERE game_date = @d")


def is_stale(newest: dt.datetime | None, now: dt.datetime, max_age_hours: int) -> bool:
    """True when a start must refuse. `max_age_hours` 0 disables the check."""
    if max_age_hours <= 0:
        return False
    if newest is None:
        return True
    if newest.tzinfo is None:
        newest = newest.replace(tzinfo=dt.UTC)
    return now - newest > dt.timedelta(hours=max_age_hours)


def check_fresh(clients: Clients, game_date: dt.date, now: dt.datetime | None = None) -> dt.datetime | None:
    """Raise StaleInputs unless the date's newest context load is recent enough; returns its time."""
    s = clients.settings
    if s.context_max_age_hours <= 0:
        return None
    ids.validate_table_name(s.context_table)
    rows = list(clients.bq.query(freshness_sql(s.context_table_id), job_config=bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("d", "DATE", game_date)])).result())
    n, newest = int(rows[0]["n"]), rows[0]["newest"]
    if is_stale(newest, now or dt.datetime.now(dt.UTC), s.context_max_age_hours):
        raise StaleInputs(game_date, newest, s.context_max_age_hours, n)
    return newest
