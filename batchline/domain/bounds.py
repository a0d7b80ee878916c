"""A number read from untrusted text (an environment variable, a fault spec) and held to its range.

Settings and fault specs both refuse a value that is not a number of the right kind or lies outside
its range (nan and inf included), with a message that names the setting; this is that check, once.
"""

from __future__ import annotations

from typing import TypeVar

N = TypeVar("N", int, float)
_NOUNS = {int: "an integer", float: "a number"}


def parse_bounded(raw: str, kind: type[N], lo: N, hi: N, *, name: str, noun: str | None = None, unit: str = "",
                  error: type[ValueError] = ValueError) -> N:
    """`raw` as a `kind` (int or float) within [lo, hi], both inclusive, else `error` naming `name`
    (and `noun`, what the value is, e.g. "a probability")."""
    try:
        value = kind(raw)
    except ValueError as exc:
        raise error(f"{name} must be {noun or _NOUNS[kind]}, got {raw!r}") from exc
    if not lo <= value <= hi:  # also refuses nan
        raise error(f"{name} must be between {_shown(lo)} and {_shown(hi)}{unit}, got {value}")
    return value


def _shown(bound: int | float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)
