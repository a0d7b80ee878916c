"""Identifier validation: the strict allow-list every untrusted id passes before it names anything.

SQL *values* always travel as query parameters; these checks are for the identifiers that cannot
(table and dataset names) and for the ids that become part of them (batch ids, item ids), so that no
string formatting of untrusted input ever reaches SQL or a resource name (F7).
"""

from __future__ import annotations

import datetime as dt
import hashlib
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
_WRITE_ID = re.compile(r"[0-9a-f]{32}")
_PIN = re.compile(r"g[0-9]{1,6}_a[0-9]{1,6}_[0-9a-f]{12}")
# Firestore's database ids (projects.databases.create): 4-63 of [a-z0-9-], a letter first, a letter or
# digit last, not UUID-like; or "(default)".
_FIRESTORE_DATABASE = re.compile(r"\(default\)|[a-z][a-z0-9-]{2,61}[a-z0-9]")
_UUID_LIKE = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")

STAGING_PREFIX = "stg_"
#: How many hex digits of SHA-256 name a dead-letter or rejected-message document (hashed_doc_id).
MESSAGE_DOC_ID_HEX = 40
#: The game dates any route accepts (parse_game_date); a date outside is bad input.
FIRST_GAME_DATE = dt.date(2000, 1, 1)
LAST_GAME_DATE = dt.date(2100, 12, 31)


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


def validate_firestore_database(value: object) -> str:
    db = _check(_FIRESTORE_DATABASE, value, "Firestore database id")
    if _UUID_LIKE.fullmatch(db):
        raise ValueError(f"invalid Firestore database id: {db!r} (must not look like a UUID)")
    return db


def validate_batch_id(value: object) -> str:
    return _check(_BATCH_ID, value, "batch id")


def validate_item_id(value: object) -> str:
    return _check(_ITEM_ID, value, "item id")


def validate_game_id(value: object) -> str:
    return _check(_GAME_ID, value, "game id")


def parse_game_date(value: object) -> dt.date:
    """An ISO date between FIRST_GAME_DATE and LAST_GAME_DATE (2000-01-01..2100-12-31)."""
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
    if not FIRST_GAME_DATE <= day <= LAST_GAME_DATE:
        raise ValueError(f"invalid game date: {value!r} (outside {FIRST_GAME_DATE}..{LAST_GAME_DATE})")
    return day


def new_batch_id(game_date: dt.date) -> str:
    """A batch run id unique per run: the date plus 48 random bits (a Firestore create() guards the
    astronomically rare collision)."""
    return f"{game_date:%Y%m%d}_{secrets.token_hex(6)}"


def date_of_batch_id(batch_id: str) -> dt.date | None:
    """The game date a batch id begins with (new_batch_id), None when it names no valid date."""
    try:
        return dt.datetime.strptime(validate_batch_id(batch_id)[:8], "%Y%m%d").date()
    except ValueError:
        return None


def batch_staging_table(batch_id: str) -> str:
    """The one staging table of a batch run (F7): a re-run of a date gets a new batch id, so a new table."""
    return f"{STAGING_PREFIX}{validate_batch_id(batch_id)}"


def batch_of_staging_table(table: str) -> str | None:
    """The batch id a staging table belongs to, or None if the name is not a batch staging table's."""
    if not table.startswith(STAGING_PREFIX):
        return None
    try:
        return validate_batch_id(table[len(STAGING_PREFIX):])
    except ValueError:
        return None


def validate_write_id(value: object) -> str:
    """A write id: one per delivery attempt of a work item, tagging the rows that attempt appended."""
    return _check(_WRITE_ID, value, "write id")


def new_write_id() -> str:
    return secrets.token_hex(16)


def validate_pin(value: object) -> str:
    """A pin: one MERGE attempt's manifest in the manifest table (batchline/adapters/manifests.py)."""
    return _check(_PIN, value, "manifest pin")


def merge_attempt_label(generation: int, attempt: int) -> str:
    """`g{generation}_a{attempt}`: one MERGE attempt of a batch, as its job id, its pinned manifest's
    document id and its pins spell it (stored ids and job ids depend on this exact form)."""
    return f"g{int(generation)}_a{int(attempt)}"


def new_pin(generation: int, attempt: int) -> str:
    """A fresh pin of (generation, attempt): a delivery that pins again after another died gets its own."""
    return f"{merge_attempt_label(generation, attempt)}_{secrets.token_hex(6)}"


def hashed_doc_id(text: str, hex_digits: int = 64) -> str:
    """The Firestore document id for untrusted text (a Pub/Sub message id, a control request id): the
    first `hex_digits` of the hex SHA-256 of its UTF-8, so no "/" or length in the text can address
    another document. Lone surrogates (decoded JSON may hold them) are hashed as they are, not refused.
    Ids already stored depend on this exact form: tests/unit/test_ids.py pins it."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:hex_digits]
