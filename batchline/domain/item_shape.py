"""The expected shape of one item's rows, defined once: exactly one row per configured prediction
system x prop (schema.PREDICTION_SYSTEMS x schema.PREDICTION_PROPS), each its own prediction id.

A row count alone cannot tell a complete item from a short one: a completion claiming 3 rows of a
write of 3 is true about the write and still 2 predictions short. So wherever an item's rows are
judged, they are judged by their shape, from aggregates one GROUP BY gives per write or per player
(rows, distinct prediction ids, distinct `system/prop` pairs: `PAIRS_SQL`), with this one pure
function: the worker before it writes, the completion check, the consolidation's choice of a write
(and the orphan path's), the ledger, the audit and the reconciliation. Bulk callers (one query per
batch) pass each group's aggregates to `shape_problem` in turn.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from batchline.domain.schema import PREDICTION_PROPS, PREDICTION_SYSTEMS

# The failure reason of an item whose completion named an incomplete write (flows/completion.py): the
# reports count it incomplete, naming what the write lacked (accounting.py).
INCOMPLETE_WRITE = "incomplete write"
# The SQL that lists a group's distinct pairs; ARRAY_AGG of no rows is NULL, read as none.
PAIRS_SQL = "ARRAY_AGG(DISTINCT CONCAT(system_id, '/', prop_type))"


def pair(system_id: str, prop_type: str) -> str:
    return f"{system_id}/{prop_type}"


EXPECTED_PAIRS: frozenset[str] = frozenset(pair(s, p) for s in PREDICTION_SYSTEMS for p in PREDICTION_PROPS)
EXPECTED_ROWS = len(EXPECTED_PAIRS)  # one row per pair: what a complete item's completion claims


@dataclass(frozen=True)
class Shape:
    """What a group of rows (one write, or one player's rows of a batch) holds."""

    rows: int
    keys: int  # distinct prediction ids
    pairs: frozenset[str]  # distinct system/prop pairs

    @classmethod
    def of(cls, rows: int, keys: int, pairs: Iterable[str] | None) -> Shape:
        return cls(int(rows), int(keys), frozenset(pairs or ()))


def shape_problem(shape: Shape, expected: frozenset[str] = EXPECTED_PAIRS) -> str | None:
    """None when the rows are one item's complete work, else what is wrong, in words."""
    missing, extra = sorted(expected - shape.pairs), sorted(shape.pairs - expected)
    if missing:
        return (f"lacks {len(missing)} of its {len(expected)} system x prop predictions "
                f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
    if extra:
        return f"holds predictions no configured system x prop names ({', '.join(extra[:5])})"
    if shape.keys != shape.rows:
        return f"repeats a prediction id ({shape.rows} rows, {shape.keys} distinct ids)"
    if shape.rows != len(expected):
        return f"holds {shape.rows} rows for {len(expected)} system x prop predictions"
    return None


def rows_problem(rows: list[dict], expected: frozenset[str] = EXPECTED_PAIRS) -> str | None:
    """shape_problem of rows in hand (the worker's, before it writes them)."""
    return shape_problem(Shape(len(rows), len({r["prediction_id"] for r in rows}),
                               frozenset(pair(r["system_id"], r["prop_type"]) for r in rows)), expected)
