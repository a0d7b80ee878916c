"""Identifier validation: the strict allow-list every untrusted id passes before it names anything.

SQL *values* always travel as query parameters; these checks are for the identifiers that cannot
(table and dataset names) and for the ids that become part of them (batch ids, item ids), so that no
string formatting of untrusted input ever reaches SQL or a resource name (F7).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_DATASET = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,1023}")
_TOPIC_PREFIX = re.compile(r"[a-z][a-z0-9-]{0,39}")
_LOCATION = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,29}")
_BATCH_ID = re.compile(r"[0-9]{8}_[0-9a-f]{12}")
_ITEM_ID = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
_GAME_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{0,63}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

STAGING_PREFIX = "stg_"
COMBINED_PREFIX = "cmb_"
_STAGING_SEPARATOR = "__"


def _check(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"invalid {what}: {value!r} (must match {pattern.pattern})")
    return value


def validate_project(value: object) -> str:
    return _check(_PROJECT, value, "project id")


def validate_dataset(value: object) -> str:
    return _check(_DATASET, value, "dataset name")


def validate_table_name(value: object) -> str:
    return _check(_TABLE, value, "table name")


def validate_topic_prefix(value: object) -> str:
    return _check(_TOPIC_PREFIX, value, "topic prefix")


def validate_location(value: object) -> str:
    return _check(_LOCATION, value, "location")


def validate_batch_id(value: object) -> str:
    return _check(_BATCH_ID, value, "batch id")


def validate_item_id(value: object) -> str:
    return _check(_ITEM_ID, value, "item id")


def validate_game_id(value: object) -> str:
    return _check(_GAME_ID, value, "game id")


def parse_game_date(value: object) -> dt.date:
    """An ISO date between 2000-01-01 and 2100-12-31."""
    if isinstance(value, dt.datetime):
        raise ValueError(f"invalid game date: {value!r} (a date, not a timestamp)")
    if isinstance(value, dt.date):
        day = value
    else:
        _check(_DATE, value, "game date (YYYY-MM-DD)")
        try:
            day = dt.date.fromisoformat(value)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"invalid game date: {value!r} ({exc})") from exc
    if not dt.date(2000, 1, 1) <= day <= dt.date(2100, 12, 31):
        raise ValueError(f"invalid game date: {value!r} (outside 2000-01-01..2100-12-31)")
    return day


def new_batch_id(game_date: dt.date) -> str:
    """A batch run id unique per run: the date plus 48 random bits (a Firestore create() guards the
    astronomically rare collision)."""
    return f"{game_date:%Y%m%d}_{secrets.token_hex(6)}"


def staging_table_name(batch_id: str, item_id: str) -> str:
    """Unique per batch run and per item (F7): re-running a date gets a new batch id, so new tables."""
    return f"{STAGING_PREFIX}{validate_batch_id(batch_id)}{_STAGING_SEPARATOR}{validate_item_id(item_id)}"


def combined_table_name(batch_id: str, n: int) -> str:
    """A scratch table holding one chunk of a large batch's staging tables (see consolidate.py).
    Its prefix differs from STAGING_PREFIX, so it is never mistaken for an item's table."""
    if not 0 <= n < 10_000:
        raise ValueError(f"invalid chunk number {n}")
    return f"{COMBINED_PREFIX}{validate_batch_id(batch_id)}{_STAGING_SEPARATOR}{n:04d}"


def staging_prefix(batch_id: str) -> str:
    return f"{STAGING_PREFIX}{validate_batch_id(batch_id)}{_STAGING_SEPARATOR}"


def item_of_staging_table(batch_id: str, table: str) -> str | None:
    """The item id a staging table of `batch_id` belongs to, or None if it is not one of its tables."""
    prefix = staging_prefix(batch_id)
    if not table.startswith(prefix):
        return None
    try:
        return validate_item_id(table[len(prefix):])
    except ValueError:
        return None
