"""When a job fires: unix-cron on the wall clock of the job's time zone, as Cloud Scheduler evaluates it
(docs/scheduler.md), with croniter. Pure: every function takes the instant to start from.

Day of the month and day of the week are OR-ed when both are restricted (Google's page and croniter's
`day_or`). Around daylight-saving changes, which Google leaves loosely specified ("may observe
execution anomalies"; UTC recommended), croniter's answer is the rule here and the unit tests pin it:
a wall time the spring change skips fires once, at the end of the gap (02:30 fires at 03:00); a wall
time the autumn change repeats fires at both instants (01:30 EDT, then 01:30 EST).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from croniter import croniter


def next_fire(cron: str, time_zone: str, after: dt.datetime) -> dt.datetime:
    """The first fire time strictly after `after` (an aware datetime), in UTC."""
    if after.tzinfo is None:
        raise ValueError("`after` must be timezone-aware")
    it = croniter(cron, after.astimezone(ZoneInfo(time_zone)), day_or=True)
    return it.get_next(dt.datetime).astimezone(dt.UTC)


def fires(cron: str, time_zone: str, after: dt.datetime, count: int) -> list[dt.datetime]:
    """The next `count` fire times after `after`, in UTC."""
    out: list[dt.datetime] = []
    for _ in range(count):
        after = next_fire(cron, time_zone, after)
        out.append(after)
    return out


def due(cron: str, time_zone: str, next_at: dt.datetime, now: dt.datetime) -> tuple[dt.datetime | None, int,
                                                                                     dt.datetime]:
    """What a scheduler that last planned `next_at` does at `now`: the schedule time to run now (None if
    not yet due), how many earlier fire times it missed meanwhile (the process was stopped or the
    machine slept: they are not run late, as Cloud Scheduler does not run a paused job's missed
    times), and the next fire time after `now`."""
    if now < next_at:
        return None, 0, next_at
    latest, missed = next_at, 0
    while (following := next_fire(cron, time_zone, latest)) <= now:
        latest, missed = following, missed + 1
    return latest, missed, next_fire(cron, time_zone, now)
