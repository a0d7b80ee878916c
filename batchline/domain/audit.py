"""Where every expected item of a batch ended: exactly one of five terminal states.

merged         complete rows in the main table carrying the batch id (counted there; item_shape.py)
recovered      dead-lettered, then merged from its staged write anyway (its write had succeeded)
dead_lettered  dead-lettered and not merged (batch state has the reason and the attempts)
incomplete     rows in the main table that are not the item's complete work (named, with what they lack)
missing        neither merged nor dead-lettered: the number that must be zero

Pure, so `batchline audit` and the loss ledger partition the same way (batchline/domain/accounting.py).
"""

from __future__ import annotations

from collections.abc import Iterable

STATES = ("merged", "recovered", "dead_lettered", "incomplete", "missing")


def partition(expected: Iterable[str], merged: Iterable[str], dead_lettered: Iterable[str],
              incomplete: Iterable[str] = ()) -> dict[str, list[str]]:
    """Each expected item in exactly one state (sorted lists keyed by STATES). `merged` are the items
    whose rows are complete, `incomplete` those with rows that are not (item_shape.py): they never
    count as merged, whether dead-lettered or not. Items merged or dead-lettered that were not
    expected are not counted here; the caller reports them if it cares."""
    exp, inc = set(expected), set(incomplete)
    m, d = set(merged) - inc, set(dead_lettered) - inc
    out = {
        "merged": sorted((exp & m) - d),
        "recovered": sorted(exp & m & d),
        "dead_lettered": sorted((exp & d) - m),
        "incomplete": sorted(exp & inc),
        "missing": sorted(exp - m - d - inc),
    }
    if sum(len(v) for v in out.values()) != len(exp):  # by construction; kept as the contract
        raise AssertionError(f"partition of {len(exp)} items counted {sum(len(v) for v in out.values())}")
    return out
