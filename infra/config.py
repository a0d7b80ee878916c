"""Typed, validated stack configuration.

One object per concern under the `batchline:` namespace (`pulumi config set --path ...`), declared in
infra/config_types.py. Every value is checked when the program starts; an error names the full key
and the allowed range, e.g. `batchline:functions.worker.max_instances must be between 1 and 1000, got
0`. Unknown keys are errors too, so a typo never silently falls back to a default.

`load(raw)` validates the stack file's objects, then resolves what depends on more than one of them:
each function's caps over its defaults and the emergency profile, each topic's delivery policy over
the topology's defaults (a push ack deadline outlasting its target's timeout), each job's retry over
the stack-wide one (its deadline outlasting its target), and whether the caps carry the largest batch.
It is pure (no Pulumi needed): tests and the policy runner validate a stack file with it.
`from_pulumi()` reads the same objects with `pulumi.Config().require_object/get_object`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

from infra import limits
from infra.config_capacity import check_capacity
from infra.config_fields import NAMESPACE, ConfigError, key, validated
from infra.config_types import (
    DEFAULT_CAPS,
    DEFAULT_EMERGENCY_PROFILE,
    POLICY_KEYS,
    SCHEDULED_FUNCTIONS,
    BigQueryConfig,
    CapacityConfig,
    DeliveryValues,
    FirestoreConfig,
    FunctionCaps,
    FunctionsConfig,
    GcpConfig,
    Notifications,
    PerFunction,
    PubSubConfig,
    PubSubFile,
    RetryValues,
    Schedule,
    ScheduleFile,
    SchedulerRetry,
    SchedulesConfig,
    SchedulesFile,
    StackConfig,
    StackFile,
    Thresholds,
)
from infra.shared import topology

# re-exported: callers import the config objects and ConfigError from here
__all__ = ["DEFAULT_CAPS", "DEFAULT_EMERGENCY_PROFILE", "NAMESPACE", "BigQueryConfig", "CapacityConfig", "ConfigError",
           "FirestoreConfig", "FunctionCaps", "FunctionsConfig", "GcpConfig", "Notifications", "PubSubConfig",
           "Schedule", "SchedulerRetry", "SchedulesConfig", "StackConfig", "Thresholds", "from_pulumi", "load"]

TOP_LEVEL_KEYS = tuple(StackFile.model_fields)
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


def load(raw: Mapping[str, Any], *, has_slack_token: bool | None = None) -> StackConfig:
    """Validate a stack's `batchline:` config. `raw` maps keys without the namespace to parsed values
    (objects as dicts). The Slack token's value is never needed here, only whether it is set."""
    file = validated(StackFile, raw, "")
    if has_slack_token is None:
        has_slack_token = bool(raw.get("slack_token"))
    if file.gcp is None:
        raise ConfigError(f"{key('gcp')} is required: {{project: <project id>, region: <region>}}")
    functions = resolve_functions(file)
    pubsub = resolve_pubsub(file.pubsub, functions)
    return StackConfig(
        gcp=file.gcp, functions=functions, pubsub=pubsub, schedules=resolve_schedules(file.schedules, functions),
        thresholds=file.thresholds,
        notifications=checked_notifications(file.notifications, has_slack_token),
        bigquery=file.bigquery, firestore=file.firestore, apis=REQUIRED_APIS, operators=file.operators,
        capacity=check_capacity(file.capacity, functions, pubsub))


def resolve_functions(file: StackFile) -> FunctionsConfig:
    """Each function's caps over its defaults; the emergency profile's over those (checked even while
    the flag is off: a profile that does not hold is found now, not in an emergency)."""
    normal = {fn: validated(FunctionCaps, getattr(file.functions, fn), f"functions.{fn}", DEFAULT_CAPS[fn].model_dump())
              for fn in topology.FUNCTIONS}
    profile = file.emergency_profile
    if profile is None:
        profile = validated(PerFunction, DEFAULT_EMERGENCY_PROFILE, "emergency_profile")
    emergency = {fn: validated(FunctionCaps, own, f"emergency_profile.{fn}", normal[fn].model_dump())
                 if (own := getattr(profile, fn)) is not None else normal[fn] for fn in topology.FUNCTIONS}
    return FunctionsConfig(caps=emergency if file.emergency else normal, emergency=file.emergency,
                           normal_caps=normal, profile_caps=emergency)


def _push_ack_check(ack: int, ack_key: str, sub: str, fn: str, timeout_s: int) -> None:
    need, margin, most = limits.needed_deadline(timeout_s), limits.DEADLINE_MARGIN_S, limits.ACK_DEADLINE_S.hi
    if need > most:
        raise ConfigError(f"{key(f'functions.{fn}.timeout_s')} ({timeout_s}) + {margin} s margin exceeds the {most} s "
                          f"maximum ack deadline of the push subscription {sub}: for push, the ack deadline is the "
                          f"request timeout")
    if ack < need:
        raise ConfigError(f"{key(ack_key)} ({ack}) must be at least {key(f'functions.{fn}.timeout_s')} ({timeout_s}) "
                          f"+ {margin} s for {sub}: for push, the ack deadline is the request timeout, and a shorter "
                          f"one redelivers requests that are still running")


def _topic_policy(t: topology.TopicSpec, file: PubSubFile, functions: FunctionsConfig) -> topology.DeliveryPolicy:
    """The topic's source subscriptions' policy: the topology's defaults (unset, a push ack deadline
    follows the target's timeout), the stack-wide values over them, the topic's own over both."""
    spec = t.subscriptions[0]
    base = spec.policy
    if spec.push is not None:
        base = replace(base, ack_deadline_s=limits.default_push_ack(
            base.ack_deadline_s, functions.longest_timeout_s(spec.push.function)))
    own = getattr(file.per_topic, t.key)
    values = {**file.model_dump(include=set(POLICY_KEYS), exclude_unset=True), **(own or {})}
    path = f"pubsub.per_topic.{t.key}" if own is not None else "pubsub"
    policy = topology.DeliveryPolicy(**validated(DeliveryValues, values, path, asdict(base)).model_dump())
    ack_key = f"{path}.ack_deadline_s" if own is not None and "ack_deadline_s" in own else "pubsub.ack_deadline_s"
    for s in t.subscriptions:
        if s.push is not None:
            _push_ack_check(policy.ack_deadline_s, ack_key, s.name, s.push.function,
                            functions.longest_timeout_s(s.push.function))
    return policy


def resolve_pubsub(file: PubSubFile, functions: FunctionsConfig) -> PubSubConfig:
    topo = topology.build_topology(file.topic_prefix)
    policies = {t.key: _topic_policy(t, file, functions) for t in topo.topics}
    # the dead-letter topics' push readers call the coordinator's /dead-letters/<key>
    coordinator_timeout = functions.longest_timeout_s(topology.COORDINATOR)
    dlq_ack = limits.default_push_ack(60, coordinator_timeout)
    _push_ack_check(dlq_ack, "pubsub", f"{file.topic_prefix}-*-dlq-push", topology.COORDINATOR, coordinator_timeout)
    return PubSubConfig(topic_prefix=file.topic_prefix, policies=policies, dead_letter_push_ack_s=dlq_ack)


def _job(file: ScheduleFile | None, job: str, stack_retry: SchedulerRetry, timeout_s: int) -> Schedule:
    """One job's schedule; its `retry` keys override the stack-wide `schedules.retry` for it alone, and
    its attempt deadline must outlast the function it calls."""
    path = f"schedules.{job}"
    if file is None:
        raise ConfigError(f"{key(path)} is required: {{cron: '<unix-cron>', time_zone: '<IANA tz>'}}")
    own = file.retry or {}
    retry = SchedulerRetry(**validated(RetryValues, own, f"{path}.retry", stack_retry.model_dump()).model_dump()) \
        if own else stack_retry
    fn = SCHEDULED_FUNCTIONS[job]
    if retry.attempt_deadline_s < limits.needed_deadline(timeout_s):
        deadline_key = f"{path if 'attempt_deadline_s' in own else 'schedules'}.retry.attempt_deadline_s"
        raise ConfigError(
            f"{key(deadline_key)} ({retry.attempt_deadline_s}) must be at least "
            f"{key(f'functions.{fn}.timeout_s')} ({timeout_s}) + {limits.DEADLINE_MARGIN_S} s (the {job} job "
            f"calls {fn}; a shorter deadline retries a run that is still going: duplicate runs, false failures)")
    return Schedule(cron=file.cron, time_zone=file.time_zone, retry=retry)


def resolve_schedules(file: SchedulesFile, functions: FunctionsConfig) -> SchedulesConfig:
    timeouts = {job: functions.longest_timeout_s(fn) for job, fn in SCHEDULED_FUNCTIONS.items()}
    # unset, the stack-wide deadline outlasts every scheduled function (a job may set a shorter one)
    base = SchedulerRetry(attempt_deadline_s=limits.default_attempt_deadline(list(timeouts.values())))
    retry = SchedulerRetry(**validated(RetryValues, file.retry, "schedules.retry", base.model_dump()).model_dump())
    jobs = {job: _job(getattr(file, job), job, retry, timeouts[job]) for job in SCHEDULED_FUNCTIONS}
    return SchedulesConfig(**jobs, retry=retry)


def checked_notifications(n: Notifications, has_slack_token: bool) -> Notifications:
    """Every alert must notify someone, and a Slack channel needs its token."""
    if n.slack_channel and not has_slack_token:
        raise ConfigError(f"{key('notifications.slack_channel')} is set but the secret {key('slack_token')} is "
                          f"missing: pulumi config set --secret {key('slack_token')} xoxb-...")
    if not n.emails and not n.slack_channel:
        raise ConfigError(f"{key('notifications')} needs at least one of emails or slack_channel: "
                          f"every alert policy must notify someone")
    return n


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
