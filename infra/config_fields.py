"""The fields of stack config as pydantic validates them, and its errors as people read them.

Each field type below is pydantic metadata (`Annotated[int, IntIn(limits.ACK_DEADLINE_S)]`) that checks
one value and says what is allowed; `StackFileModel` refuses unknown keys, naming them and the allowed
ones; `validated` turns pydantic's first error into a ConfigError naming the full key:

    batchline:pubsub.ack_deadline_s must be between 10 and 600, got 5

Values read from a stack file may be strings (`pulumi config set --path` leaves them so): `validated`
says so in pydantic's validation context; a model built in code takes typed values only.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError, core_schema

from infra.cron import cron_problem
from infra.limits import Range

NAMESPACE = "batchline"
_FROM_STACK_FILE = "from_stack_file"  # the validation context's flag
_AT = "{at}"  # in a problem's message: the full key of the value it is about


class ConfigError(ValueError):
    """A stack config value is missing, unknown or out of range; the message names the key."""


def key(path: str) -> str:
    return f"{NAMESPACE}:{path}"


def config_problem(message: str) -> PydanticCustomError:
    """A validation error whose message names the value's key where it says `{at}`."""
    return PydanticCustomError("stack_config", "{message}", {"message": message})


class StackFileModel(BaseModel):
    """A frozen object of stack config: an unset (null) object is empty, anything but an object is
    refused, and so is an unknown key, so a typo never silently falls back to a default."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _an_object_of_known_keys(cls, raw: Any) -> Any:
        if raw is None:
            return {}
        if isinstance(raw, BaseModel):
            return raw
        if not isinstance(raw, Mapping):
            raise config_problem(f"{_AT} must be an object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(cls.model_fields))
        if unknown:
            raise PydanticCustomError("unknown_keys", "unknown key(s)",
                                      {"unknown": unknown, "allowed": list(cls.model_fields)})
        return raw


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], raw: Any, path: str, base: Mapping[str, Any] | None = None) -> M:
    """The stack file's value at `path` (its keys over `base`'s values) as a `model`, or a ConfigError
    naming the key."""
    if base is not None:
        raw = {**base, **raw} if isinstance(raw, Mapping) else base if raw is None else raw
    try:
        return model.model_validate(raw, context={_FROM_STACK_FILE: True})
    except ValidationError as exc:
        raise ConfigError(_message(exc.errors()[0], path)) from None


def _message(error: Any, path: str) -> str:
    where = ".".join([p for p in (path, *map(str, error["loc"])) if p])
    if error["type"] == "unknown_keys":
        unknown, allowed = error["ctx"]["unknown"], error["ctx"]["allowed"]
        if not where:
            return (f"unknown config key(s) {', '.join(key(u) for u in unknown)}; "
                    f"allowed: {', '.join(key(k) for k in allowed)}")
        return f"{key(where)}: unknown key(s) {', '.join(key(f'{where}.{u}') for u in unknown)}; " \
               f"allowed: {', '.join(allowed)}"
    if error["type"] == "stack_config":
        return error["ctx"]["message"].replace(_AT, key(where))
    if error["type"] == "missing":
        return f"{key(where)} is required"
    return f"{key(where)}: {error['msg']}"


# --- field types ---------------------------------------------------------------------------------
class _Field:
    """pydantic metadata: `check(raw, from_stack_file)` returns the value or raises config_problem."""

    def check(self, raw: Any, from_stack_file: bool) -> Any:
        raise NotImplementedError

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        def validate(raw: Any, info: ValidationInfo) -> Any:
            return self.check(raw, bool(info.context and info.context.get(_FROM_STACK_FILE)))
        return core_schema.with_info_plain_validator_function(validate)


@dataclass(frozen=True)
class IntIn(_Field):
    bounds: Range

    def check(self, raw: Any, from_stack_file: bool) -> int:
        lo, hi = self.bounds
        if raw is None:
            raise config_problem(f"{_AT} is required (integer between {lo} and {hi})")
        value = raw
        if from_stack_file and isinstance(raw, str):
            try:
                value = int(raw)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int):
            raise config_problem(f"{_AT} must be an integer between {lo} and {hi}, got {raw!r}")
        if not lo <= value <= hi:
            raise config_problem(f"{_AT} must be between {lo} and {hi}, got {value}")
        return value


@dataclass(frozen=True)
class FloatIn(_Field):
    bounds: Range

    def check(self, raw: Any, from_stack_file: bool) -> float:
        lo, hi = self.bounds
        wrong = config_problem(f"{_AT} must be a number between {lo} and {hi}, got {raw!r}")
        if isinstance(raw, bool) or not isinstance(raw, (int, float, *((str,) if from_stack_file else ()))):
            raise wrong
        try:
            value = float(raw)
        except ValueError:
            raise wrong from None
        if not lo <= value <= hi:
            raise config_problem(f"{_AT} must be between {lo} and {hi}, got {value}")
        return value


@dataclass(frozen=True)
class OneOf(_Field):
    choices: tuple[str, ...]

    def check(self, raw: Any, from_stack_file: bool) -> str:
        value = str(raw) if from_stack_file else raw  # a stack file's `cpu: 1` is the choice "1"
        if value not in self.choices:
            raise config_problem(f"{_AT} must be one of {', '.join(self.choices)}, got {value!r}")
        return value


@dataclass(frozen=True)
class Flag(_Field):
    def check(self, raw: Any, from_stack_file: bool) -> bool:
        if isinstance(raw, bool):
            return raw
        if from_stack_file and isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise config_problem(f"{_AT} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Ident(_Field):
    """An identifier `validate` accepts (batchline/domain/ids.py: the same checks as the functions')."""

    validate: Callable[[Any], str]

    def check(self, raw: Any, from_stack_file: bool) -> str:
        try:
            return self.validate(raw)
        except ValueError as exc:
            raise config_problem(f"{_AT}: {exc}") from None


_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_MEMBER = re.compile(r"(user|group|serviceAccount):[^@\s:]+@[^@\s:]+\.[^@\s:]+")
_SLACK_CHANNEL = re.compile(r"#?[a-z0-9_\-]{1,80}")


@dataclass(frozen=True)
class Region(_Field):
    def check(self, raw: Any, from_stack_file: bool) -> str:
        region = str(raw)
        if not _REGION.fullmatch(region):
            raise config_problem(f"{_AT} must be a GCP region like us-central1, got {region!r}")
        return region


@dataclass(frozen=True)
class TimeZone(_Field):
    def check(self, raw: Any, from_stack_file: bool) -> str:
        try:
            zoneinfo.ZoneInfo(str(raw))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise config_problem(f"{_AT} must be an IANA time zone (e.g. America/New_York), got {raw!r}") from None
        return str(raw)


@dataclass(frozen=True)
class Cron(_Field):
    """Google's unix-cron (`cron_problem`)."""

    def check(self, raw: Any, from_stack_file: bool) -> str:
        problem = cron_problem(raw) if isinstance(raw, str) else f"got a {type(raw).__name__}"
        if problem:
            raise config_problem(f"{_AT} must be a 5-field unix-cron expression, got {raw!r}: {problem}")
        return raw


@dataclass(frozen=True)
class Emails(_Field):
    def check(self, raw: Any, from_stack_file: bool) -> tuple[str, ...]:
        if not isinstance(raw, (list, tuple)) or not all(isinstance(e, str) and _EMAIL.fullmatch(e) for e in raw):
            raise config_problem(f"{_AT} must be a list of e-mail addresses, got {raw!r}")
        return tuple(raw)


@dataclass(frozen=True)
class SlackChannel(_Field):
    def check(self, raw: Any, from_stack_file: bool) -> str | None:
        if raw is not None and (not isinstance(raw, str) or not _SLACK_CHANNEL.fullmatch(raw)):
            raise config_problem(f"{_AT} must be a Slack channel name, got {raw!r}")
        return raw


@dataclass(frozen=True)
class Members(_Field):
    """A list of IAM members, each `user:EMAIL`, `group:EMAIL` or `serviceAccount:EMAIL`, no duplicates."""

    def check(self, raw: Any, from_stack_file: bool) -> tuple[str, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, (list, tuple)):
            raise config_problem(f"{_AT} must be a list of IAM members (user:EMAIL, group:EMAIL or "
                                 f"serviceAccount:EMAIL), got {raw!r}")
        for m in raw:
            if not isinstance(m, str) or not _MEMBER.fullmatch(m):
                raise config_problem(f"{_AT}: {m!r} is not an IAM member; each must be user:EMAIL, group:EMAIL "
                                     f"or serviceAccount:EMAIL")
        if len(set(raw)) != len(raw):
            raise config_problem(f"{_AT} lists a member twice: {raw!r}")
        return tuple(raw)


@dataclass(frozen=True)
class AnObject(_Field):
    """An object whose keys are checked later, against defaults only then known (a function's caps,
    a topic's delivery policy, a job's retry): here only that it is one."""

    def check(self, raw: Any, from_stack_file: bool) -> dict[str, Any] | None:
        if raw is not None and not isinstance(raw, Mapping):
            raise config_problem(f"{_AT} must be an object, got {type(raw).__name__}")
        return None if raw is None else dict(raw)
