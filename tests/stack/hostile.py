"""Hostile inputs for the stack's HTTP routes, and what "nothing written" means on the real stack.

Every generated case is guaranteed invalid (a bad field, a bad body, or no envelope at all), so each
route has exactly one right answer: 4xx on the live and scheduler routes, 200 "rejected" (recorded) on a
dead-letter route. Valid-looking ids always name a batch that does not exist.
"""

from __future__ import annotations

import base64
import json
from collections import Counter

from hypothesis import strategies as st

from batchline.domain import ids
from batchline.layout import BATCHES, DATES, ITEMS, REJECTED

GHOST = "20300101_0123456789ab"  # a well-formed batch id no test creates
INJECTIONS = [
    "'; DROP TABLE predictions; --", "\" OR \"1\"=\"1", "x` WHERE true; DELETE FROM `p.d.t", "../../etc/passwd",
    "batches/other/items/x", "a\x00b", "\x00", "\u202etxt.exe", "\U0001d54f" * 8, "\ud800", "${jndi:ldap://x/a}",
    "<script>alert(1)</script>", "%00%2e%2e", GHOST + "\n", " " + GHOST, "", " ", "A" * 5000, "stg_x__y; SELECT 1",
    "Robert'); --", "\\", "\"", "NaN", "1e309", "null",
]
BAD_DATES = ["2025-02-30", "2026-02-29", "2026-13-01", "2026-00-10", "0000-00-00", "1999-12-31", "2101-01-01",
             "2026-1-5", "20260115", "2026/01/15", "2026-01-15T00:00:00", "2026-01-15T00:00:00Z",
             "2026-01-15 00:00:00", "1767225600", "2026-W03-4", "", "today", "\uff12\uff10\uff12\uff16-01-15",
             1767225600, 1767225600.0, 20260115, True, [2026, 1, 15], {"y": 2026}]

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=40) | st.sampled_from(INJECTIONS))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                         max_size=4), max_leaves=15)
hostile_text = st.sampled_from(INJECTIONS) | st.text(max_size=60)


def _dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


@st.composite
def deep(draw) -> bytes:
    depth = draw(st.integers(900, 6000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    return opener * depth + b"1" + closer * depth


@st.composite
def malformed_json(draw) -> bytes:
    good = _dumps(draw(json_values | st.just({"message": {"data": "e30=", "messageId": "1"}, "subscription": "s"})))
    cut = draw(st.integers(0, max(0, len(good) - 1)))
    return good[:cut] + draw(st.sampled_from([b"", b"\x00", b"\xff", b"}", b",", b"'", b"\\u12"]))


def _ok(check, value) -> bool:
    try:
        check(value)
        return True
    except ValueError:
        return False


def _json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return False


# Fields that can never validate, per field kind. Bool/int fields get values pydantic's lax mode refuses.
def _never(check):
    return st.sampled_from([v for v in INJECTIONS if not _ok(check, v)]) | scalars.filter(lambda v: not _ok(check, v))


BAD = {
    "batch_id": _never(ids.validate_batch_id),
    "item_id": _never(ids.validate_item_id),
    "game_id": _never(ids.validate_game_id),
    "staging_table": st.sampled_from(INJECTIONS),  # any of them differs from the batch's staging table name
    "write_id": _never(ids.validate_write_id),
    "game_date": st.sampled_from(BAD_DATES),
    "row_count": st.sampled_from([0, -1, 100_001, "many", 1.5, [], None]),
    "attempt": st.sampled_from([-1, 1001, 5000, "x", 2.5]),
    "write_status": st.sampled_from(["", "failed", "OK", None, 1]),
    "reason": st.sampled_from(["", "stall", None, 7, "manual; DROP"]),
    "v": st.sampled_from([0, 2, None, 1.5]),
    "force": st.sampled_from(["maybe", 2, [], {}, "truee"]),
    "faults": st.sampled_from([7, [], "x" * 1001, {"a": 1}]),
    "stall_minutes": st.sampled_from([0, -1, 1441, "abc", 1.5, []]),
    "min_completion_pct": st.sampled_from([-0.1, 100.5, "x", [], float("inf")]),
    "redispatch": st.sampled_from(["maybe", 2, []]),
    "redispatch_max": st.sampled_from([-1, 1001, "x", 1.5]),
}


BASE = {
    "work": {"v": 1, "batch_id": GHOST, "game_date": "2030-01-01", "item_id": "player_0001", "game_id": "g1"},
    "completion": {"v": 1, "batch_id": GHOST, "item_id": "player_0001", "write_status": "ok", "attempt": 1,
                   "staging_table": ids.batch_staging_table(GHOST), "write_id": "0123456789abcdef" * 2,
                   "row_count": 3},
    "consolidation": {"v": 1, "batch_id": GHOST, "reason": "manual"},
    "start": {"game_date": "2030-01-01", "force": False},
    "stall": {"stall_minutes": 30, "redispatch": False},
    "reconcile": {"game_date": "2030-01-01", "redispatch_max": 0},
}


FIELDS = {"work": ["v", "batch_id", "game_date", "item_id", "game_id"],
          "completion": ["v", "batch_id", "item_id", "staging_table", "write_id", "row_count", "write_status",
                         "attempt"],
          "consolidation": ["v", "batch_id", "reason"], "start": ["game_date", "force", "faults"],
          "stall": ["stall_minutes", "min_completion_pct", "redispatch"], "reconcile": ["game_date", "redispatch_max"]}


@st.composite
def bad_object(draw, kind: str) -> dict:
    """The route's valid-looking object with at least one field that can never validate, or an unknown
    field (every model forbids extras)."""
    obj = dict(BASE[kind])
    for name in draw(st.lists(st.sampled_from(FIELDS[kind]), max_size=3, unique=True)):
        obj[name] = draw(BAD[name])
    if obj == BASE[kind] or draw(st.booleans()):
        if obj and draw(st.booleans()):
            del obj[draw(st.sampled_from(sorted(obj)))]
        obj[draw(st.sampled_from(["extra", "__proto__", "batch_id ", "$where", "\x00"]))] = draw(scalars)
    return obj


@st.composite
def envelope(draw, payload: bytes) -> bytes:
    data = draw(st.sampled_from(["b64", "b64", "raw", "urlsafe"]))
    encoded = {"b64": base64.b64encode(payload).decode(), "raw": payload.decode("latin-1"),
               "urlsafe": base64.urlsafe_b64encode(payload).decode().rstrip("=") + "!"}[data]
    msg = {"data": encoded, "messageId": draw(st.sampled_from(["m-1", "\x00", "\ud800", "a/b/../c", "x" * 128])
                                              | st.text(min_size=1, max_size=20)),
           "attributes": draw(st.sampled_from([{}, {"batch_id": GHOST, "item_id": "player_0001"},
                                               {"batch_id": "'; DROP", "item_id": "\x00" * 70}]))}
    body = {"message": msg, "subscription": draw(st.sampled_from(["projects/p/subscriptions/s", "\x00", "x" * 512]))}
    if draw(st.booleans()):
        body["deliveryAttempt"] = draw(st.sampled_from([1, 5, 1000, 5000, -1, 0, 10**30, "3", 2.5, None]))
    return _dumps(body)


def push_bodies(kind: str):
    payload = st.one_of(bad_object(kind).map(_dumps), deep(), malformed_json(), json_values.map(_dumps),
                        st.binary(max_size=200))
    return st.one_of(payload.flatmap(envelope), st.binary(max_size=300), malformed_json(), deep(),
                     json_values.map(_dumps))


def json_bodies(kind: str):
    """Never an empty body or a JSON object other than a bad one: `{}` is a valid request on these routes."""
    raw = st.binary(min_size=1, max_size=300) | malformed_json()
    return st.one_of(bad_object(kind).map(_dumps), raw.filter(lambda b: b.strip() and not _json_object(b)), deep(),
                     json_values.filter(lambda v: not isinstance(v, dict)).map(_dumps))


# -- what "nothing written" means -----------------------------------------------------------------
def snapshot(stack, *, with_rejected: bool = True) -> dict:
    """Every Firestore document the pipeline owns (with its update time) and every staging table."""
    fs, s = stack.clients.fs, stack.clients.settings
    out = {name: {d.reference.path: d.update_time for d in fs.collection(name).stream()}
           for name in (BATCHES, DATES)}
    out[ITEMS] = {d.reference.path: d.update_time for d in fs.collection_group(ITEMS).stream()}
    out["staging_tables"] = {t.table_id for t in stack.clients.bq.list_tables(f"{s.project}.{s.staging_dataset}")}
    if with_rejected:
        out[REJECTED] = {d.reference.path: d.update_time for d in fs.collection(REJECTED).stream()}
    return out


TALLY: Counter = Counter()  # (route, status) -> cases, reported by the module's last test
