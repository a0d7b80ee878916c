"""Whether Cloud Scheduler accepts a cron expression, without croniter (whose grammar is wider). The
stack config refuses what Google would refuse at `pulumi up`, and the local scheduler refuses an
override the deployment could not run."""

from __future__ import annotations

import re

# Google's unix-cron (https://cloud.google.com/scheduler/docs/configuring/cron-job-schedules): per
# field its range and the names it takes; `*`, a value or a range a-b, a range (or *) may carry /step,
# and lists join them with commas. Extensions other crons accept (L, W, #, ?, @daily, seconds) are not
# Google's, so they are refused here rather than at `pulumi up`.
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of the month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of the week", 0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
_CRON_ITEM = re.compile(r"(?P<range>\*|(?P<a>[0-9]+|[A-Z]{3})(?:-(?P<b>[0-9]+|[A-Z]{3}))?)(?:/(?P<step>[0-9]+))?")


def _cron_value(token: str, lo: int, hi: int, names: tuple[str, ...]) -> int | None:
    value = names.index(token) + lo if token in names else int(token) if token.isdigit() else None
    return value if value is not None and lo <= value <= hi else None


def cron_problem(expr: str) -> str | None:
    """Why Cloud Scheduler would refuse this unix-cron expression, or None if it is valid."""
    fields = expr.split()
    if len(fields) != 5:
        return f"it has {len(fields)} fields, not 5"
    for text, (name, lo, hi, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            m = _CRON_ITEM.fullmatch(item)
            if m is None or (m["step"] is not None and (int(m["step"]) == 0 or (m["a"] and not m["b"]))):
                return f"{name} field {text!r}: {item!r} is not *, N, N-M, */S or N-M/S"
            ends = [t for t in (m["a"], m["b"]) if t is not None]
            values = [_cron_value(t, lo, hi, names) for t in ends]
            if None in values:
                allowed = f"{lo}-{hi}" + (f" or {names[0]}-{names[-1]}" if names else "")
                return f"{name} field {text!r}: {item!r} is outside {allowed}"
            if len(values) == 2 and values[0] > values[1]:
                return f"{name} field {text!r}: range {item!r} runs backwards"
    return None
