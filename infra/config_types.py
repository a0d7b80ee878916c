"""The stack configuration's objects, each field declared once with its type, default and range
(infra/config_fields.py validates and words it), frozen pydantic models that refuse unknown fields
and mistyped values. `infra.config.load` builds them from a stack file; everything else reads them.

Two kinds: what the stack file says (`StackFile` and the objects in it), and what the program uses
(`StackConfig`: every default resolved, the emergency profile applied, the delivery policies merged).
Where the functions read a value too, its default and range are batchline.settings' own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, create_model, model_validator

# The schedule models are the schedule contract's own (batchline/schedules.py renders the jobs from
# them, for infra and the local scheduler alike); re-exported here with the other config objects.
from batchline.schedules import JOB_TARGETS
from batchline.schedules import Schedule as Schedule
from batchline.schedules import SchedulerRetry as SchedulerRetry
from batchline.schedules import SchedulesConfig as SchedulesConfig
from infra import limits
from infra.config_fields import (
    AnObject,
    Cron,
    Emails,
    Flag,
    FloatIn,
    Ident,
    IntIn,
    Members,
    OneOf,
    Region,
    SlackChannel,
    StackFileModel,
    TimeZone,
    config_problem,
)
from infra.limits import Range
from infra.shared import ids, settings, topology

FUNCTION_DEFAULTS = settings.Settings()  # what the functions assume when a variable is unset
RawObject = Annotated[dict[str, Any] | None, AnObject()]  # keys checked once its defaults are known
PCT = Range(*settings.PCT_RANGE)
# ranges of our own choosing (Google's are in infra/limits.py)
DML_ERRORS = Range(1, 1000)
DML_WINDOW_S = Range(60, 3600)
# Staged rows are evidence (F6): the coordinator drops a batch table only after verifying its rows, and
# the daily reconciliation alerts on any rows it finds orphaned. The expiration is a last net, so it must
# outlast a long weekend of an unanswered alert: at least 3 days.
STAGING_EXPIRATION_HOURS = Range(72, 24 * 90)
LARGEST_BATCH_ITEMS = Range(1, 1_000_000)
ITEM_S = Range(0.01, 3600.0)


class GcpConfig(StackFileModel):
    project: Annotated[str, Ident(ids.validate_project)]
    region: Annotated[str, Region()] = "us-central1"


class FunctionCaps(StackFileModel):
    max_instances: Annotated[int, IntIn(limits.MAX_INSTANCES)]
    concurrency: Annotated[int, IntIn(limits.CONCURRENCY)]
    memory: Annotated[str, OneOf(limits.MEMORY_CHOICES)] = "512Mi"
    cpu: Annotated[str, OneOf(limits.CPU_CHOICES)] = "1"  # which pairs Google accepts: limits.memory_cpu_problem
    timeout_s: Annotated[int, IntIn(limits.TIMEOUT_S)] = 540
    min_instances: Annotated[int, IntIn(limits.MIN_INSTANCES)] = 0

    @model_validator(mode="after")
    def _accepted_by_google(self) -> FunctionCaps:
        if self.min_instances > self.max_instances:
            raise config_problem(f"{{at}}.min_instances ({self.min_instances}) must not exceed "
                                 f"{{at}}.max_instances ({self.max_instances})")
        if self.concurrency > 1 and float(self.cpu) < 1:
            raise config_problem(f"{{at}}.concurrency > 1 needs {{at}}.cpu >= 1 (Cloud Functions gen2 rule), "
                                 f"got cpu {self.cpu}")
        problem = limits.memory_cpu_problem(self.memory, self.cpu)
        if problem:
            raise config_problem(f"{{at}}.memory / {{at}}.cpu: Google rejects this pair: {problem}")
        return self


DEFAULT_CAPS: dict[str, FunctionCaps] = {
    "worker": FunctionCaps(max_instances=20, concurrency=5, memory="1Gi", timeout_s=120),
    "coordinator": FunctionCaps(max_instances=5, concurrency=10, memory="512Mi", timeout_s=540),
    "reconcile": FunctionCaps(max_instances=1, concurrency=1, memory="512Mi", timeout_s=900),
}
# The seeds' emergency cut (F10): 4 instances x 3 requests on the fan-out worker.
DEFAULT_EMERGENCY_PROFILE: dict[str, dict[str, int]] = {topology.WORKER: {"max_instances": 4, "concurrency": 3}}


def _keyed(name: str, keys: tuple[str, ...], doc: str) -> type[StackFileModel]:
    """An object keyed by the names of the shared topology, each value an object checked later."""
    model = create_model(name, __base__=StackFileModel, **{k: (RawObject, None) for k in keys})
    model.__doc__ = doc
    return model


TOPIC_KEYS = tuple(t.key for t in topology.build_topology(FUNCTION_DEFAULTS.topic_prefix).topics)
PerFunction = _keyed("PerFunction", topology.FUNCTIONS, "`functions`, `emergency_profile`: caps keys per function.")
PerTopic = _keyed("PerTopic", TOPIC_KEYS, "`pubsub.per_topic`: delivery policy keys per topic.")


class FunctionsConfig(StackFileModel):
    caps: dict[str, FunctionCaps]  # effective caps (emergency profile already applied)
    emergency: bool = False
    normal_caps: dict[str, FunctionCaps] = Field(default_factory=dict)  # caps without the profile
    profile_caps: dict[str, FunctionCaps] = Field(default_factory=dict)  # caps with the profile

    def longest_timeout_s(self, fn: str) -> int:
        """The function's timeout in either mode: callers' deadlines must hold when the flag flips."""
        return max(c[fn].timeout_s for c in (self.caps, self.normal_caps, self.profile_caps) if fn in c)


class DeliveryValues(StackFileModel):
    """A delivery policy as stack config sets it (`pubsub`, `pubsub.per_topic.<key>`), over the
    topology's defaults for the topic."""

    ack_deadline_s: Annotated[int, IntIn(limits.ACK_DEADLINE_S)]
    max_delivery_attempts: Annotated[int, IntIn(limits.MAX_DELIVERY_ATTEMPTS)]
    min_backoff_s: Annotated[int, IntIn(limits.BACKOFF_S)]
    max_backoff_s: Annotated[int, IntIn(limits.BACKOFF_S)]
    retention_s: Annotated[int, IntIn(limits.RETENTION_S)]

    @model_validator(mode="after")
    def _backoff_in_order(self) -> DeliveryValues:
        if self.min_backoff_s > self.max_backoff_s:
            raise config_problem(f"{{at}}.min_backoff_s ({self.min_backoff_s}) must not exceed "
                                 f"{{at}}.max_backoff_s ({self.max_backoff_s})")
        return self


POLICY_KEYS = tuple(DeliveryValues.model_fields)


class PubSubFile(StackFileModel):
    """`batchline:pubsub`: the stack-wide policy keys apply to every source subscription."""

    topic_prefix: Annotated[str, Ident(ids.validate_topic_prefix)] = FUNCTION_DEFAULTS.topic_prefix
    per_topic: PerTopic = PerTopic()
    ack_deadline_s: Any = None  # the policy keys: checked per topic, merged over its defaults
    max_delivery_attempts: Any = None
    min_backoff_s: Any = None
    max_backoff_s: Any = None
    retention_s: Any = None


class PubSubConfig(StackFileModel):
    topic_prefix: str
    policies: dict[str, topology.DeliveryPolicy]  # topic key -> effective policy of its source subscriptions
    dead_letter_push_ack_s: int = 60  # ack deadline of the push readers of dead-letter topics


class RetryValues(StackFileModel):
    """A scheduler retry config as stack config sets it, over the stack-wide one (or the defaults)."""

    retry_count: Annotated[int, IntIn(limits.SCHEDULER_RETRY_COUNT)]
    min_backoff_s: Annotated[int, IntIn(limits.SCHEDULER_BACKOFF_S)]
    max_backoff_s: Annotated[int, IntIn(limits.SCHEDULER_BACKOFF_S)]
    max_doublings: Annotated[int, IntIn(limits.SCHEDULER_MAX_DOUBLINGS)]
    attempt_deadline_s: Annotated[int, IntIn(limits.SCHEDULER_ATTEMPT_DEADLINE_S)]

    @model_validator(mode="after")
    def _backoff_in_order(self) -> RetryValues:
        if self.min_backoff_s > self.max_backoff_s:
            raise config_problem("{at}.min_backoff_s must not exceed {at}.max_backoff_s")
        return self


class ScheduleFile(StackFileModel):
    cron: Annotated[str, Cron()]
    time_zone: Annotated[str, TimeZone()] = FUNCTION_DEFAULTS.timezone
    retry: RawObject = None  # this job's own retry keys, over the stack-wide `schedules.retry`


# scheduler job config key (`schedules.<key>`) -> the function it calls
SCHEDULED_FUNCTIONS: dict[str, str] = {t.config_key: t.function for t in JOB_TARGETS.values()}


class SchedulesFile(StackFileModel):
    start: ScheduleFile | None = None
    stall_check: ScheduleFile | None = None
    reconcile: ScheduleFile | None = None
    retry: RawObject = None


class Thresholds(StackFileModel):
    stall_minutes: Annotated[int, IntIn(Range(*settings.STALL_MINUTES_RANGE))] = FUNCTION_DEFAULTS.stall_minutes
    min_completion_pct: Annotated[float, FloatIn(PCT)] = FUNCTION_DEFAULTS.min_completion_pct
    coverage_warning_pct: Annotated[float, FloatIn(PCT)] = FUNCTION_DEFAULTS.coverage_warning_pct
    coverage_critical_pct: Annotated[float, FloatIn(PCT)] = FUNCTION_DEFAULTS.coverage_critical_pct
    staging_write_failure_rate_pct: Annotated[float, FloatIn(PCT)] = 10.0
    dml_rate_limit_errors: Annotated[int, IntIn(DML_ERRORS)] = 5
    dml_rate_limit_window_s: Annotated[int, IntIn(DML_WINDOW_S)] = 60

    @model_validator(mode="after")
    def _critical_below_warning(self) -> Thresholds:
        if self.coverage_critical_pct >= self.coverage_warning_pct:
            raise config_problem(f"{{at}}.coverage_critical_pct ({self.coverage_critical_pct}) must be below "
                                 f"{{at}}.coverage_warning_pct ({self.coverage_warning_pct})")
        return self


class Notifications(StackFileModel):
    emails: Annotated[tuple[str, ...], Emails()] = ()
    slack_channel: Annotated[str | None, SlackChannel()] = None  # the token is the secret `batchline:slack_token`


class BigQueryConfig(StackFileModel):
    location: Annotated[str, Ident(ids.validate_location)] = FUNCTION_DEFAULTS.bq_location
    staging_location: Annotated[str, Ident(ids.validate_location)] = FUNCTION_DEFAULTS.bq_location  # = location
    main_dataset: Annotated[str, Ident(ids.validate_dataset)] = FUNCTION_DEFAULTS.main_dataset
    main_table: Annotated[str, Ident(ids.validate_table_name)] = FUNCTION_DEFAULTS.main_table
    context_table: Annotated[str, Ident(ids.validate_table_name)] = FUNCTION_DEFAULTS.context_table
    staging_dataset: Annotated[str, Ident(ids.validate_dataset)] = FUNCTION_DEFAULTS.staging_dataset
    staging_table_expiration_hours: Annotated[int, IntIn(STAGING_EXPIRATION_HOURS)] = 336
    deletion_protection: Annotated[bool, Flag()] = True

    @model_validator(mode="before")
    @classmethod
    def _staging_where_main_is(cls, raw: Any) -> Any:
        """Unset, the staging location is the main location."""
        if isinstance(raw, Mapping) and "location" in raw and "staging_location" not in raw:
            return {**raw, "staging_location": raw["location"]}
        return raw

    @model_validator(mode="after")
    def _one_location_two_datasets(self) -> BigQueryConfig:
        if self.staging_location != self.location:
            raise config_problem(f"{{at}}.staging_location ({self.staging_location}) must equal {{at}}.location "
                                 f"({self.location}): the consolidation MERGE reads staging and writes main in one "
                                 f"query, which BigQuery runs in a single location")
        if self.staging_dataset == self.main_dataset:
            raise config_problem("{at}.staging_dataset must differ from {at}.main_dataset: the staging dataset's "
                                 "default table expiration would delete the main table")
        return self


class FirestoreConfig(StackFileModel):
    create: Annotated[bool, Flag()] = True  # false when the project already has a (default) database
    location: Annotated[str, Ident(ids.validate_location)] = "nam5"
    database: Annotated[str, Ident(ids.validate_firestore_database)] = FUNCTION_DEFAULTS.firestore_database


class CapacityConfig(StackFileModel):
    """What the caps and delivery policy must carry (infra/capacity.py): the largest batch a start may
    dispatch, and how long one message holds a slot at most (an upper estimate, not a mean)."""

    largest_batch_items: Annotated[int, IntIn(LARGEST_BATCH_ITEMS)] = 500  # the built-in workload: ~450 a day
    worker_item_s: Annotated[float, FloatIn(ITEM_S)] = 2.0  # one work item: Firestore reads, predict, append, publish
    coordinator_item_s: Annotated[float, FloatIn(ITEM_S)] = 3.0  # one completion: its COUNT (~1 s), Firestore writes

    def item_s(self, function: str) -> float:
        """Seconds one message holds a slot of `function` (the worker or the coordinator)."""
        return {topology.WORKER: self.worker_item_s, topology.COORDINATOR: self.coordinator_item_s}[function]


class StackFile(StackFileModel):
    """The `batchline:` namespace as the stack file writes it (infra.config.load resolves it)."""

    gcp: GcpConfig | None = None  # required: load says so, with what to set
    functions: PerFunction = PerFunction()
    emergency: Annotated[bool, Flag()] = False
    emergency_profile: PerFunction | None = None  # unset: DEFAULT_EMERGENCY_PROFILE
    pubsub: PubSubFile = PubSubFile()
    schedules: SchedulesFile = SchedulesFile()
    thresholds: Thresholds = Thresholds()
    notifications: Notifications = Notifications()
    slack_token: Any = None  # a secret: only whether it is set matters here
    bigquery: BigQueryConfig = BigQueryConfig()
    firestore: FirestoreConfig = FirestoreConfig()
    operators: Annotated[tuple[str, ...], Members()] = ()  # IAM members granted infra/access.py's OPERATOR_ACCESS
    capacity: CapacityConfig = CapacityConfig()


class StackConfig(StackFileModel):
    gcp: GcpConfig
    functions: FunctionsConfig
    pubsub: PubSubConfig
    schedules: SchedulesConfig
    thresholds: Thresholds
    notifications: Notifications
    bigquery: BigQueryConfig
    firestore: FirestoreConfig
    apis: tuple[str, ...]
    operators: tuple[str, ...] = ()  # IAM members granted infra/access.py's OPERATOR_ACCESS
    capacity: CapacityConfig = Field(default_factory=CapacityConfig)
