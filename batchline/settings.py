"""Runtime settings of the functions, read from environment variables.

The Pulumi program sets these variables on each Cloud Function; the local stack sets the same ones
(plus the emulator hosts) on each functions-framework process. Every value is validated, so a typo in
a deployment fails at start with the variable's name instead of half-working.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from batchline.domain import ids, schema
from batchline.domain.bounds import parse_bounded

ENV_PROJECT = "BATCHLINE_PROJECT"
ENV_TOPIC_PREFIX = "BATCHLINE_TOPIC_PREFIX"
ENV_MAIN_DATASET = "BATCHLINE_MAIN_DATASET"
ENV_MAIN_TABLE = "BATCHLINE_MAIN_TABLE"
ENV_CONTEXT_TABLE = "BATCHLINE_CONTEXT_TABLE"
ENV_STAGING_DATASET = "BATCHLINE_STAGING_DATASET"
ENV_BQ_LOCATION = "BATCHLINE_BQ_LOCATION"
# The Firestore database holding batch state: "(default)" or a named database (infra's firestore.database).
ENV_FIRESTORE_DATABASE = "BATCHLINE_FIRESTORE_DATABASE"
ENV_STALL_MINUTES = "BATCHLINE_STALL_MINUTES"
ENV_MIN_COMPLETION_PCT = "BATCHLINE_MIN_COMPLETION_PCT"
ENV_COVERAGE_WARNING_PCT = "BATCHLINE_COVERAGE_WARNING_PCT"
ENV_COVERAGE_CRITICAL_PCT = "BATCHLINE_COVERAGE_CRITICAL_PCT"
ENV_ALLOW_FAULTS = "BATCHLINE_ALLOW_FAULTS"
# The time zone "today" is taken in when the scheduler's call names no date (the schedule's zone:
# an evening start in New York is already tomorrow in UTC).
ENV_TIMEZONE = "BATCHLINE_TIMEZONE"
# A start refuses (424) when the date's newest context row was loaded longer ago than this; 0 disables
# the check. The upstream "done" event is not evidence that the data is there (dispatch.check_fresh).
ENV_CONTEXT_MAX_AGE_HOURS = "BATCHLINE_CONTEXT_MAX_AGE_HOURS"
# A staging table of a batch that is still active, older than this, is reported by the reconciliation
# (never merged or deleted by age alone: the stall check owns active batches).
ENV_ORPHAN_AGE_HOURS = "BATCHLINE_ORPHAN_AGE_HOURS"
# A dispatch publishes at most this many work messages per second (the worker's slots / seconds per
# item, set by infra from batchline:capacity), but never takes longer than BATCHLINE_DISPATCH_BUDGET_S:
# a larger batch is published faster. 0 = all at once (batchline/domain/pacing.py, issue 18).
ENV_DISPATCH_RATE = "BATCHLINE_DISPATCH_RATE"
ENV_DISPATCH_BUDGET_S = "BATCHLINE_DISPATCH_BUDGET_S"
# Emulator endpoints (local stack and tests only). The Pub/Sub and Firestore clients read their
# standard *_EMULATOR_HOST variables themselves; BigQuery has no such variable, so we name one.
ENV_BIGQUERY_EMULATOR_HOST = "BIGQUERY_EMULATOR_HOST"
# The emulator's Storage Write API (gRPC) host:port; unset, batchline.adapters.write_api uses the real API.
ENV_BIGQUERY_WRITE_EMULATOR_HOST = "BIGQUERY_WRITE_EMULATOR_HOST"


# The ranges of the thresholds the functions read, declared once with their defaults (Settings below):
# from_env refuses a value outside them, and the stack config (infra's batchline:thresholds) takes both.
STALL_MINUTES_RANGE: tuple[int, int] = (1, 24 * 60)
PCT_RANGE: tuple[float, float] = (0.0, 100.0)


class SettingsError(ValueError):
    """A setting is missing or out of range; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    project: str = "batchline-local"
    topic_prefix: str = "batchline"
    main_dataset: str = "predictions"
    main_table: str = "player_prop_predictions"
    context_table: str = "player_game_context"
    staging_dataset: str = "batchline_staging"
    bq_location: str = "US"
    firestore_database: str = "(default)"
    stall_minutes: int = 30
    min_completion_pct: float = 0.0
    coverage_warning_pct: float = 95.0
    coverage_critical_pct: float = 85.0
    allow_faults: bool = False
    timezone: str = "UTC"
    context_max_age_hours: int = 24
    orphan_age_hours: int = 24
    dispatch_rate: float = 0.0
    dispatch_budget_s: int = 0
    bigquery_emulator_host: str | None = None
    bigquery_write_emulator_host: str | None = None

    def today(self) -> dt.date:
        return dt.datetime.now(ZoneInfo(self.timezone)).date()

    @property
    def main_table_id(self) -> str:
        return f"{self.project}.{self.main_dataset}.{self.main_table}"

    @property
    def manifest_table_id(self) -> str:
        return f"{self.project}.{self.main_dataset}.{schema.MANIFEST_TABLE}"

    @property
    def context_table_id(self) -> str:
        return f"{self.project}.{self.main_dataset}.{self.context_table}"

    def staging_table_id(self, table: str) -> str:
        return f"{self.project}.{self.staging_dataset}.{ids.validate_table_name(table)}"

    def as_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in another process."""
        env = {
            ENV_PROJECT: self.project,
            ENV_TOPIC_PREFIX: self.topic_prefix,
            ENV_MAIN_DATASET: self.main_dataset,
            ENV_MAIN_TABLE: self.main_table,
            ENV_CONTEXT_TABLE: self.context_table,
            ENV_STAGING_DATASET: self.staging_dataset,
            ENV_BQ_LOCATION: self.bq_location,
            ENV_FIRESTORE_DATABASE: self.firestore_database,
            ENV_STALL_MINUTES: str(self.stall_minutes),
            ENV_MIN_COMPLETION_PCT: str(self.min_completion_pct),
            ENV_COVERAGE_WARNING_PCT: str(self.coverage_warning_pct),
            ENV_COVERAGE_CRITICAL_PCT: str(self.coverage_critical_pct),
            ENV_ALLOW_FAULTS: "1" if self.allow_faults else "0",
            ENV_TIMEZONE: self.timezone,
            ENV_CONTEXT_MAX_AGE_HOURS: str(self.context_max_age_hours),
            ENV_ORPHAN_AGE_HOURS: str(self.orphan_age_hours),
            ENV_DISPATCH_RATE: f"{self.dispatch_rate:g}",
            ENV_DISPATCH_BUDGET_S: str(self.dispatch_budget_s),
        }
        if self.bigquery_emulator_host:
            env[ENV_BIGQUERY_EMULATOR_HOST] = self.bigquery_emulator_host
        if self.bigquery_write_emulator_host:
            env[ENV_BIGQUERY_WRITE_EMULATOR_HOST] = self.bigquery_write_emulator_host
        return env

    def deployed_env(self) -> dict[str, str]:
        """What a deployment sets on every function: `as_env()` without the fault switch (a
        deployment never enables faults) and without emulator endpoints. The Pulumi program renders
        the functions' environment with this, so the contract is written once, here."""
        env = self.as_env()
        env.pop(ENV_ALLOW_FAULTS)
        env.pop(ENV_BIGQUERY_EMULATOR_HOST, None)
        env.pop(ENV_BIGQUERY_WRITE_EMULATOR_HOST, None)
        return env


def _int(env: dict[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    return parse_bounded(raw, int, lo, hi, name=key, error=SettingsError)


def from_env(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    d = Settings()

    def ident(key: str, default: str, check) -> str:
        value = env.get(key) or default
        try:
            return check(value)
        except ValueError as exc:
            raise SettingsError(f"{key}: {exc}") from exc

    def pct(key: str, default: float) -> float:
        return parse_bounded(env.get(key) or str(default), float, *PCT_RANGE, name=key, error=SettingsError)

    warning = pct(ENV_COVERAGE_WARNING_PCT, d.coverage_warning_pct)
    critical = pct(ENV_COVERAGE_CRITICAL_PCT, d.coverage_critical_pct)
    if critical > warning:
        raise SettingsError(f"{ENV_COVERAGE_CRITICAL_PCT} ({critical}) must not exceed "
                            f"{ENV_COVERAGE_WARNING_PCT} ({warning})")
    rate = parse_bounded(env.get(ENV_DISPATCH_RATE) or "0", float, 0.0, 100_000.0, name=ENV_DISPATCH_RATE,
                         unit=" messages/s", error=SettingsError)
    tz = env.get(ENV_TIMEZONE) or d.timezone
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SettingsError(f"{ENV_TIMEZONE} must be an IANA time zone such as America/New_York, got {tz!r}") from exc
    return Settings(
        project=ident(ENV_PROJECT, d.project, ids.validate_project),
        topic_prefix=ident(ENV_TOPIC_PREFIX, d.topic_prefix, ids.validate_topic_prefix),
        main_dataset=ident(ENV_MAIN_DATASET, d.main_dataset, ids.validate_dataset),
        main_table=ident(ENV_MAIN_TABLE, d.main_table, ids.validate_table_name),
        context_table=ident(ENV_CONTEXT_TABLE, d.context_table, ids.validate_table_name),
        staging_dataset=ident(ENV_STAGING_DATASET, d.staging_dataset, ids.validate_dataset),
        bq_location=ident(ENV_BQ_LOCATION, d.bq_location, ids.validate_location),
        firestore_database=ident(ENV_FIRESTORE_DATABASE, d.firestore_database, ids.validate_firestore_database),
        stall_minutes=_int(env, ENV_STALL_MINUTES, d.stall_minutes, *STALL_MINUTES_RANGE),
        min_completion_pct=pct(ENV_MIN_COMPLETION_PCT, d.min_completion_pct),
        coverage_warning_pct=warning,
        coverage_critical_pct=critical,
        allow_faults=env.get(ENV_ALLOW_FAULTS, "0") == "1",
        timezone=tz,
        context_max_age_hours=_int(env, ENV_CONTEXT_MAX_AGE_HOURS, d.context_max_age_hours, 0, 24 * 31),
        orphan_age_hours=_int(env, ENV_ORPHAN_AGE_HOURS, d.orphan_age_hours, 1, 24 * 31),
        dispatch_rate=rate,
        dispatch_budget_s=_int(env, ENV_DISPATCH_BUDGET_S, d.dispatch_budget_s, 0, 3600),
        bigquery_emulator_host=env.get(ENV_BIGQUERY_EMULATOR_HOST) or None,
        bigquery_write_emulator_host=env.get(ENV_BIGQUERY_WRITE_EMULATOR_HOST) or None,
    )
