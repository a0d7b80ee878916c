"""Where every expected item of a batch ended: exactly one of four terminal states.

merged         rows in the main table carrying the batch id (counted there)
recovered      dead-lettered, then merged from its staged write anyway (its write had succeeded)
dead_lettered  dead-lettered and not merged (batch state has the reason and the attempts)
missing        neither merged nor dead-lettered: the number that must be zero

Pure, so `batchline audit` and the loss ledger partition the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

STATES = ("merged", "recovered", "dead_lettered", "missing")


def partition(expected: Iterable[str], merged: Iterable[str], dead_lettered: Iterable[str]) -> dict[str, list[str]]:
    """Each expected item in exactly one state (sorted lists keyed by STATES). Items merged or
    dead-lettered that were not expected are not counted here; the caller reports them if it cares."""
    exp, m, d = set(expected), set(merged), set(dead_lettered)
    out = {
        "merged": sorted((exp & m) - d),
        "recovered": sorted(exp & m & d),
        "dead_lettered": sorted((exp & d) - m),
        "missing": sorted(exp - m - d),
    }
    if sum(len(v) for v in out.values()) != len(exp):  # by construction; kept as the contract
        raise AssertionError(f"partition of {len(exp)} items counted {sum(len(v) for v in out.values())}")
    return out
