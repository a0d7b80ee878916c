"""Field validation for stack config: each helper reads one key and raises ConfigError naming the
full key (`batchline:<path>`) and what is allowed."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from typing import Any

NAMESPACE = "batchline"


class ConfigError(ValueError):
    """A stack config value is missing, unknown or out of range; the message names the key."""


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------
def _key(path: str) -> str:
    return f"{NAMESPACE}:{path}"


def _obj(value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_key(path)} must be an object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{_key(path)}: unknown key(s) {', '.join(_key(f'{path}.{u}') for u in unknown)}; "
            f"allowed: {', '.join(allowed)}")
    return dict(value)


def _int(obj: Mapping[str, Any], name: str, path: str, default: int | None, rng: tuple[int, int]) -> int:
    key = f"{path}.{name}"
    raw = obj.get(name, default)
    if raw is None:
        raise ConfigError(f"{_key(key)} is required (integer between {rng[0]} and {rng[1]})")
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ConfigError(f"{_key(key)} must be an integer between {rng[0]} and {rng[1]}, got {raw!r}")
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{_key(key)} must be an integer between {rng[0]} and {rng[1]}, got {raw!r}") from exc
    if not rng[0] <= value <= rng[1]:
        raise ConfigError(f"{_key(key)} must be between {rng[0]} and {rng[1]}, got {value}")
    return value


def _float(obj: Mapping[str, Any], name: str, path: str, default: float, rng: tuple[float, float]) -> float:
    key = f"{path}.{name}"
    raw = obj.get(name, default)
    if isinstance(raw, bool):
        raise ConfigError(f"{_key(key)} must be a number between {rng[0]} and {rng[1]}, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{_key(key)} must be a number between {rng[0]} and {rng[1]}, got {raw!r}") from exc
    if not rng[0] <= value <= rng[1]:
        raise ConfigError(f"{_key(key)} must be between {rng[0]} and {rng[1]}, got {value}")
    return value


def _bool(obj: Mapping[str, Any], name: str, path: str, default: bool) -> bool:
    raw = obj.get(name, default)
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise ConfigError(f"{_key(f'{path}.{name}')} must be true or false, got {raw!r}")


def _choice(obj: Mapping[str, Any], name: str, path: str, default: str, choices: tuple[str, ...]) -> str:
    raw = str(obj.get(name, default))
    if raw not in choices:
        raise ConfigError(f"{_key(f'{path}.{name}')} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _ident(obj: Mapping[str, Any], name: str, path: str, default: str | None, check) -> str:
    raw = obj.get(name, default)
    if raw is None:
        raise ConfigError(f"{_key(f'{path}.{name}')} is required")
    try:
        return check(raw)
    except ValueError as exc:
        raise ConfigError(f"{_key(f'{path}.{name}')}: {exc}") from exc


_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MEMBER = re.compile(r"(user|group|serviceAccount):[^@\s:]+@[^@\s:]+\.[^@\s:]+")


def _members(value: Any, key: str) -> tuple[str, ...]:
    """A list of IAM members, each `user:EMAIL`, `group:EMAIL` or `serviceAccount:EMAIL`, no duplicates."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{_key(key)} must be a list of IAM members (user:EMAIL, group:EMAIL or "
                          f"serviceAccount:EMAIL), got {value!r}")
    for m in value:
        if not isinstance(m, str) or not _MEMBER.fullmatch(m):
            raise ConfigError(f"{_key(key)}: {m!r} is not an IAM member; each must be user:EMAIL, group:EMAIL "
                              f"or serviceAccount:EMAIL")
    if len(set(value)) != len(value):
        raise ConfigError(f"{_key(key)} lists a member twice: {value!r}")
    return tuple(value)


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


def _cron(value: Any, key: str) -> str:
    problem = cron_problem(value) if isinstance(value, str) else f"got a {type(value).__name__}"
    if problem:
        raise ConfigError(f"{_key(key)} must be a 5-field unix-cron expression, got {value!r}: {problem}")
    return value


def _tz(value: Any, key: str) -> str:
    try:
        zoneinfo.ZoneInfo(str(value))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{_key(key)} must be an IANA time zone (e.g. America/New_York), got {value!r}") from exc
    return str(value)
