"""Typed, validated stack configuration.

One object per concern under the `batchline:` namespace (`pulumi config set --path ...`). Every
value is checked when the program starts; an error names the full key and the allowed range, e.g.
`batchline:functions.worker.max_instances must be between 1 and 1000, got 0`. Unknown keys are
errors too, so a typo never silently falls back to a default.

`load(raw)` is pure (no Pulumi needed): tests and the policy runner validate a stack file with it.
`from_pulumi()` reads the same objects with `pulumi.Config().require_object/get_object`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from batchline import ids
from batchline.schedules import JOB_TARGETS
from batchline.topology import COORDINATOR, FUNCTIONS, DeliveryPolicy, build_topology
from infra import limits
from infra.config_capacity import load_capacity
from infra.config_fields import (
    _EMAIL,
    _REGION,
    NAMESPACE,
    ConfigError,
    _bool,
    _choice,
    _cron,
    _float,
    _ident,
    _int,
    _key,
    _members,
    _obj,
    _tz,
)
from infra.config_types import (
    DEFAULT_CAPS,
    DEFAULT_EMERGENCY_PROFILE,
    BigQueryConfig,
    CapacityConfig,
    FirestoreConfig,
    FunctionCaps,
    FunctionsConfig,
    GcpConfig,
    Notifications,
    PubSubConfig,
    Schedule,
    SchedulerRetry,
    SchedulesConfig,
    StackConfig,
    Thresholds,
)

# re-exported: callers import the config objects and ConfigError from here
__all__ = ["DEFAULT_CAPS", "DEFAULT_EMERGENCY_PROFILE", "NAMESPACE", "BigQueryConfig", "CapacityConfig", "ConfigError",
           "FirestoreConfig", "FunctionCaps", "FunctionsConfig", "GcpConfig", "Notifications", "PubSubConfig",
           "Schedule", "SchedulerRetry", "SchedulesConfig", "StackConfig", "Thresholds", "from_pulumi", "load"]


# ---------------------------------------------------------------------------------------------
# Ranges, declared once: validation uses them and docs/infra.md lists them.
# ---------------------------------------------------------------------------------------------
MAX_INSTANCES = (1, 1000)
CONCURRENCY = (1, 1000)  # Cloud Functions gen2 per-instance request concurrency
MIN_INSTANCES = (0, 100)
TIMEOUT_S = (1, 3600)  # HTTP functions (gen2)
MEMORY_CHOICES = tuple(limits.MEMORY_MIB)
CPU_CHOICES = limits.CPU_CHOICES  # which pairs Google accepts: limits.memory_cpu_problem
ACK_DEADLINE_S = (10, 600)
MAX_DELIVERY_ATTEMPTS = (5, 100)
BACKOFF_S = (0, 600)
RETENTION_S = (600, 7 * 24 * 3600)  # Pub/Sub subscription message retention: 10 min .. 7 days
SCHEDULER_RETRY_COUNT = (0, 5)
SCHEDULER_BACKOFF_S = (1, 3600)
SCHEDULER_MAX_DOUBLINGS = (0, 16)
SCHEDULER_ATTEMPT_DEADLINE_S = (15, 1800)  # HTTP targets
STALL_MINUTES = (1, 24 * 60)
PCT = (0.0, 100.0)
DML_ERRORS = (1, 1000)
DML_WINDOW_S = (60, 3600)
# Staged rows are evidence (F6): the coordinator drops a batch table only after verifying its rows, and
# the daily reconciliation alerts on any rows it finds orphaned. The expiration is a last net, so it must
# outlast a long weekend of an unanswered alert: at least 3 days.
STAGING_EXPIRATION_HOURS = (72, 24 * 90)


# ---------------------------------------------------------------------------------------------
# Per-concern loaders
# ---------------------------------------------------------------------------------------------
def load_gcp(raw: Any) -> GcpConfig:
    if raw is None:
        raise ConfigError(f"{_key('gcp')} is required: {{project: <project id>, region: <region>}}")
    o = _obj(raw, "gcp", ("project", "region"))
    project = _ident(o, "project", "gcp", None, ids.validate_project)
    region = str(o.get("region", GcpConfig.model_fields["region"].default))
    if not _REGION.fullmatch(region):
        raise ConfigError(f"{_key('gcp.region')} must be a GCP region like us-central1, got {region!r}")
    return GcpConfig(project=project, region=region)


_CAP_KEYS = ("max_instances", "concurrency", "memory", "cpu", "timeout_s", "min_instances")


def _caps(raw: Any, path: str, base: FunctionCaps) -> FunctionCaps:
    o = _obj(raw, path, _CAP_KEYS)
    caps = FunctionCaps(
        max_instances=_int(o, "max_instances", path, base.max_instances, MAX_INSTANCES),
        concurrency=_int(o, "concurrency", path, base.concurrency, CONCURRENCY),
        memory=_choice(o, "memory", path, base.memory, MEMORY_CHOICES),
        cpu=_choice(o, "cpu", path, base.cpu, CPU_CHOICES),
        timeout_s=_int(o, "timeout_s", path, base.timeout_s, TIMEOUT_S),
        min_instances=_int(o, "min_instances", path, base.min_instances, MIN_INSTANCES),
    )
    if caps.min_instances > caps.max_instances:
        raise ConfigError(f"{_key(path + '.min_instances')} ({caps.min_instances}) must not exceed "
                          f"{_key(path + '.max_instances')} ({caps.max_instances})")
    if caps.concurrency > 1 and float(caps.cpu) < 1:
        raise ConfigError(f"{_key(path + '.concurrency')} > 1 needs {_key(path + '.cpu')} >= 1 "
                          f"(Cloud Functions gen2 rule), got cpu {caps.cpu}")
    problem = limits.memory_cpu_problem(caps.memory, caps.cpu)
    if problem:
        raise ConfigError(f"{_key(path + '.memory')} / {_key(path + '.cpu')}: Google rejects this pair: {problem}")
    return caps


def load_functions(raw: Any, flag: bool, profile: Any) -> FunctionsConfig:
    o = _obj(raw, "functions", FUNCTIONS)
    normal = {fn: _caps(o.get(fn), f"functions.{fn}", DEFAULT_CAPS[fn]) for fn in FUNCTIONS}
    p = _obj(profile if profile is not None else DEFAULT_EMERGENCY_PROFILE, "emergency_profile", FUNCTIONS)
    emergency_caps = {fn: _caps(p[fn], f"emergency_profile.{fn}", normal[fn]) if fn in p else normal[fn]
                      for fn in FUNCTIONS}
    return FunctionsConfig(caps=emergency_caps if flag else normal, emergency=flag, normal_caps=normal,
                           profile_caps=emergency_caps)


_POLICY_KEYS = ("ack_deadline_s", "max_delivery_attempts", "min_backoff_s", "max_backoff_s", "retention_s")


def _policy(o: Mapping[str, Any], path: str, base: DeliveryPolicy) -> DeliveryPolicy:
    pol = DeliveryPolicy(
        ack_deadline_s=_int(o, "ack_deadline_s", path, base.ack_deadline_s, ACK_DEADLINE_S),
        max_delivery_attempts=_int(o, "max_delivery_attempts", path, base.max_delivery_attempts,
                                   MAX_DELIVERY_ATTEMPTS),
        min_backoff_s=_int(o, "min_backoff_s", path, base.min_backoff_s, BACKOFF_S),
        max_backoff_s=_int(o, "max_backoff_s", path, base.max_backoff_s, BACKOFF_S),
        retention_s=_int(o, "retention_s", path, base.retention_s, RETENTION_S),
    )
    if pol.min_backoff_s > pol.max_backoff_s:
        raise ConfigError(f"{_key(path + '.min_backoff_s')} ({pol.min_backoff_s}) must not exceed "
                          f"{_key(path + '.max_backoff_s')} ({pol.max_backoff_s})")
    return pol


def _push_ack_check(ack: int, key: str, sub: str, fn: str, timeout_s: int) -> None:
    need = limits.needed_deadline(timeout_s)
    if need > limits.ACK_DEADLINE_S.hi:
        raise ConfigError(f"{_key(f'functions.{fn}.timeout_s')} ({timeout_s}) + {limits.DEADLINE_MARGIN_S} s margin "
                          f"exceeds the {limits.ACK_DEADLINE_S.hi} s maximum ack deadline of the push "
                          f"subscription {sub}: for push, the ack deadline is the request timeout")
    if ack < need:
        raise ConfigError(f"{_key(key)} ({ack}) must be at least {_key(f'functions.{fn}.timeout_s')} ({timeout_s}) "
                          f"+ {limits.DEADLINE_MARGIN_S} s for {sub}: for push, the ack deadline is the request "
                          f"timeout, and a shorter one redelivers requests that are still running")


def load_pubsub(raw: Any, functions: FunctionsConfig | None = None) -> PubSubConfig:
    functions = functions or load_functions(None, False, None)
    o = _obj(raw, "pubsub", ("topic_prefix", "per_topic", *_POLICY_KEYS))
    prefix = _ident(o, "topic_prefix", "pubsub", "batchline", ids.validate_topic_prefix)
    topology = build_topology(prefix)
    keys = tuple(t.key for t in topology.topics)
    per_topic = _obj(o.get("per_topic"), "pubsub.per_topic", keys)
    policies: dict[str, DeliveryPolicy] = {}
    for t in topology.topics:
        spec = t.subscriptions[0]
        base = spec.policy  # the topology's own per-topic defaults
        if spec.push is not None:  # unset, a push ack deadline follows the target's timeout
            base = replace(base, ack_deadline_s=limits.default_push_ack(
                base.ack_deadline_s, functions.longest_timeout_s(spec.push.function)))
        # stack-wide values override the topology's defaults, per-topic values override both
        topic_values = _obj(per_topic.get(t.key), f"pubsub.per_topic.{t.key}", _POLICY_KEYS)
        merged = {k: o[k] for k in _POLICY_KEYS if k in o}
        merged.update(topic_values)
        path = f"pubsub.per_topic.{t.key}" if t.key in per_topic else "pubsub"
        policies[t.key] = _policy(merged, path, base)
        for s in t.subscriptions:
            if s.push is not None:
                key = (f"pubsub.per_topic.{t.key}.ack_deadline_s" if "ack_deadline_s" in topic_values
                       else "pubsub.ack_deadline_s")
                _push_ack_check(policies[t.key].ack_deadline_s, key, s.name, s.push.function,
                                functions.longest_timeout_s(s.push.function))
    # the dead-letter topics' push readers call the coordinator's /dead-letters/<key>
    coordinator_timeout = functions.longest_timeout_s(COORDINATOR)
    dlq_ack = limits.default_push_ack(60, coordinator_timeout)
    _push_ack_check(dlq_ack, "pubsub", f"{prefix}-*-dlq-push", COORDINATOR, coordinator_timeout)
    return PubSubConfig(topic_prefix=prefix, policies=policies, dead_letter_push_ack_s=dlq_ack)


_RETRY_KEYS = ("retry_count", "min_backoff_s", "max_backoff_s", "max_doublings", "attempt_deadline_s")


def _retry(raw: Any, path: str, base: SchedulerRetry) -> SchedulerRetry:
    """A retry config read at `path`, each key unset taking `base`'s value."""
    o = _obj(raw, path, _RETRY_KEYS)
    retry = SchedulerRetry(
        retry_count=_int(o, "retry_count", path, base.retry_count, SCHEDULER_RETRY_COUNT),
        min_backoff_s=_int(o, "min_backoff_s", path, base.min_backoff_s, SCHEDULER_BACKOFF_S),
        max_backoff_s=_int(o, "max_backoff_s", path, base.max_backoff_s, SCHEDULER_BACKOFF_S),
        max_doublings=_int(o, "max_doublings", path, base.max_doublings, SCHEDULER_MAX_DOUBLINGS),
        attempt_deadline_s=_int(o, "attempt_deadline_s", path, base.attempt_deadline_s,
                                SCHEDULER_ATTEMPT_DEADLINE_S),
    )
    if retry.min_backoff_s > retry.max_backoff_s:
        raise ConfigError(f"{_key(path + '.min_backoff_s')} must not exceed {_key(path + '.max_backoff_s')}")
    return retry


def _schedule(raw: Any, job: str, stack_retry: SchedulerRetry, timeout_s: int) -> Schedule:
    """One job's schedule; its `retry` keys override the stack-wide `schedules.retry` for it alone."""
    path = f"schedules.{job}"
    if raw is None:
        raise ConfigError(f"{_key(path)} is required: {{cron: '<unix-cron>', time_zone: '<IANA tz>'}}")
    o = _obj(raw, path, ("cron", "time_zone", "retry"))
    own = _obj(o.get("retry"), f"{path}.retry", _RETRY_KEYS)
    retry = _retry(own, f"{path}.retry", stack_retry) if own else stack_retry
    fn = SCHEDULED_FUNCTIONS[job]
    if retry.attempt_deadline_s < limits.needed_deadline(timeout_s):
        key = f"{path if 'attempt_deadline_s' in own else 'schedules'}.retry.attempt_deadline_s"
        raise ConfigError(
            f"{_key(key)} ({retry.attempt_deadline_s}) must be at least "
            f"{_key(f'functions.{fn}.timeout_s')} ({timeout_s}) + {limits.DEADLINE_MARGIN_S} s (the {job} job "
            f"calls {fn}; a shorter deadline retries a run that is still going: duplicate runs, false failures)")
    return Schedule(cron=_cron(o.get("cron"), f"{path}.cron"),
                    time_zone=_tz(o.get("time_zone", "UTC"), f"{path}.time_zone"), retry=retry)


def load_schedules(raw: Any, functions: FunctionsConfig | None = None) -> SchedulesConfig:
    functions = functions or load_functions(None, False, None)
    timeouts = {job: functions.longest_timeout_s(fn) for job, fn in SCHEDULED_FUNCTIONS.items()}
    o = _obj(raw, "schedules", ("start", "stall_check", "reconcile", "retry"))
    d = SchedulerRetry()
    # unset, the stack-wide deadline outlasts every scheduled function (a job may set a shorter one)
    base = d.model_copy(update={"attempt_deadline_s": limits.default_attempt_deadline(list(timeouts.values()))})
    retry = _retry(o.get("retry"), "schedules.retry", base)
    jobs = {job: _schedule(o.get(job), job, retry, timeouts[job]) for job in SCHEDULED_FUNCTIONS}
    return SchedulesConfig(**jobs, retry=retry)


def load_thresholds(raw: Any) -> Thresholds:
    p = "thresholds"
    o = _obj(raw, p, tuple(Thresholds.model_fields))
    d = Thresholds()
    t = Thresholds(
        stall_minutes=_int(o, "stall_minutes", p, d.stall_minutes, STALL_MINUTES),
        min_completion_pct=_float(o, "min_completion_pct", p, d.min_completion_pct, PCT),
        coverage_warning_pct=_float(o, "coverage_warning_pct", p, d.coverage_warning_pct, PCT),
        coverage_critical_pct=_float(o, "coverage_critical_pct", p, d.coverage_critical_pct, PCT),
        staging_write_failure_rate_pct=_float(o, "staging_write_failure_rate_pct", p,
                                              d.staging_write_failure_rate_pct, PCT),
        dml_rate_limit_errors=_int(o, "dml_rate_limit_errors", p, d.dml_rate_limit_errors, DML_ERRORS),
        dml_rate_limit_window_s=_int(o, "dml_rate_limit_window_s", p, d.dml_rate_limit_window_s, DML_WINDOW_S),
    )
    if t.coverage_critical_pct >= t.coverage_warning_pct:
        raise ConfigError(f"{_key('thresholds.coverage_critical_pct')} ({t.coverage_critical_pct}) must be below "
                          f"{_key('thresholds.coverage_warning_pct')} ({t.coverage_warning_pct})")
    return t


def load_notifications(raw: Any, has_slack_token: bool) -> Notifications:
    o = _obj(raw, "notifications", ("emails", "slack_channel"))
    emails = o.get("emails", [])
    if not isinstance(emails, list) or not all(isinstance(e, str) and _EMAIL.fullmatch(e) for e in emails):
        raise ConfigError(f"{_key('notifications.emails')} must be a list of e-mail addresses, got {emails!r}")
    channel = o.get("slack_channel")
    if channel is not None and (not isinstance(channel, str) or not re.fullmatch(r"#?[a-z0-9_\-]{1,80}", channel)):
        raise ConfigError(f"{_key('notifications.slack_channel')} must be a Slack channel name, got {channel!r}")
    if channel and not has_slack_token:
        raise ConfigError(f"{_key('notifications.slack_channel')} is set but the secret {_key('slack_token')} is "
                          f"missing: pulumi config set --secret {_key('slack_token')} xoxb-...")
    if not emails and not channel:
        raise ConfigError(f"{_key('notifications')} needs at least one of emails or slack_channel: "
                          f"every alert policy must notify someone")
    return Notifications(emails=tuple(emails), slack_channel=channel)


def load_bigquery(raw: Any) -> BigQueryConfig:
    p = "bigquery"
    o = _obj(raw, p, tuple(BigQueryConfig.model_fields))
    d = BigQueryConfig()
    location = _ident(o, "location", p, d.location, ids.validate_location)
    bq = BigQueryConfig(
        location=location,
        staging_location=_ident(o, "staging_location", p, location, ids.validate_location),
        main_dataset=_ident(o, "main_dataset", p, d.main_dataset, ids.validate_dataset),
        main_table=_ident(o, "main_table", p, d.main_table, ids.validate_table_name),
        context_table=_ident(o, "context_table", p, d.context_table, ids.validate_table_name),
        staging_dataset=_ident(o, "staging_dataset", p, d.staging_dataset, ids.validate_dataset),
        staging_table_expiration_hours=_int(o, "staging_table_expiration_hours", p,
                                            d.staging_table_expiration_hours, STAGING_EXPIRATION_HOURS),
        deletion_protection=_bool(o, "deletion_protection", p, d.deletion_protection),
    )
    if bq.staging_location != bq.location:
        raise ConfigError(f"{_key('bigquery.staging_location')} ({bq.staging_location}) must equal "
                          f"{_key('bigquery.location')} ({bq.location}): the consolidation MERGE reads staging "
                          f"and writes main in one query, which BigQuery runs in a single location")
    if bq.staging_dataset == bq.main_dataset:
        raise ConfigError(f"{_key('bigquery.staging_dataset')} must differ from {_key('bigquery.main_dataset')}: "
                          f"the staging dataset's default table expiration would delete the main table")
    return bq


def load_firestore(raw: Any) -> FirestoreConfig:
    p = "firestore"
    o = _obj(raw, p, ("create", "location", "database"))
    d = FirestoreConfig()
    return FirestoreConfig(create=_bool(o, "create", p, d.create),
                           location=_ident(o, "location", p, d.location, ids.validate_location),
                           database=_ident(o, "database", p, d.database, ids.validate_firestore_database))


SCHEDULED_FUNCTIONS = {t.config_key: t.function for t in JOB_TARGETS.values()}

REQUIRED_APIS: tuple[str, ...] = (
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "bigquerystorage.googleapis.com",  # the Storage Write API workers append staged rows through
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
)

TOP_LEVEL_KEYS = ("gcp", "functions", "emergency", "emergency_profile", "pubsub", "schedules", "thresholds",
                  "notifications", "slack_token", "bigquery", "firestore", "operators", "capacity")


def load(raw: Mapping[str, Any], *, has_slack_token: bool | None = None) -> StackConfig:
    """Validate a stack's `batchline:` config. `raw` maps keys without the namespace to parsed values
    (objects as dicts). The Slack token's value is never needed here, only whether it is set."""
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(_key(u) for u in unknown)}; "
                          f"allowed: {', '.join(_key(k) for k in TOP_LEVEL_KEYS)}")
    if has_slack_token is None:
        has_slack_token = bool(raw.get("slack_token"))
    emergency = raw.get("emergency", False)
    if not isinstance(emergency, bool):
        if isinstance(emergency, str) and emergency.lower() in ("true", "false"):
            emergency = emergency.lower() == "true"
        else:
            raise ConfigError(f"{_key('emergency')} must be true or false, got {emergency!r}")
    functions = load_functions(raw.get("functions"), emergency, raw.get("emergency_profile"))
    pubsub = load_pubsub(raw.get("pubsub"), functions)
    return StackConfig(
        gcp=load_gcp(raw.get("gcp")),
        functions=functions,
        pubsub=pubsub,
        schedules=load_schedules(raw.get("schedules"), functions),
        thresholds=load_thresholds(raw.get("thresholds")),
        notifications=load_notifications(raw.get("notifications"), has_slack_token),
        bigquery=load_bigquery(raw.get("bigquery")),
        firestore=load_firestore(raw.get("firestore")),
        apis=REQUIRED_APIS,
        operators=_members(raw.get("operators"), "operators"),
        capacity=load_capacity(raw.get("capacity"), functions, pubsub),
    )


def from_pulumi() -> StackConfig:
    """Read every `batchline:` key with pulumi.Config (objects via get_object/require_object)."""
    import pulumi

    c = pulumi.Config(NAMESPACE)
    # Every key the engine handed over counts, not only the ones read below: an unknown top-level key
    # (a typo such as `batchline:emergncy`) must fail like an unknown nested key does.
    raw: dict[str, Any] = {k: "<set>" for k in namespace_keys() if k not in TOP_LEVEL_KEYS}
    raw["gcp"] = c.require_object("gcp")
    for k in ("functions", "emergency_profile", "pubsub", "schedules", "thresholds", "notifications",
              "bigquery", "firestore", "operators", "capacity"):
        v = c.get_object(k)
        if v is not None:
            raw[k] = v
    if c.get("emergency") is not None:
        raw["emergency"] = c.get_bool("emergency")
    return load(raw, has_slack_token=c.get_secret("slack_token") is not None)


def namespace_keys() -> list[str]:
    """The `batchline:` keys of the running stack's config (namespace stripped), as the engine passed
    them: explicitly set config plus the PULUMI_CONFIG bag."""
    from pulumi.runtime import config as runtime_config

    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    return sorted(k.split(":", 1)[1] for k in keys if k.startswith(f"{NAMESPACE}:"))
