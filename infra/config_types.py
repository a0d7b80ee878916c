"""The typed stack configuration objects (`infra.config.load` builds them, everything else reads
them): frozen pydantic models that refuse unknown fields and mistyped values, so a loader that
builds one wrongly fails at once."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# The schedule models are the schedule contract's own (batchline/schedules.py renders the jobs from
# them, for infra and the local scheduler alike); re-exported here with the other config objects.
from batchline.schedules import Schedule as Schedule
from batchline.schedules import SchedulerRetry as SchedulerRetry
from batchline.schedules import SchedulesConfig as SchedulesConfig
from batchline.topology import WORKER, DeliveryPolicy


# ---------------------------------------------------------------------------------------------
# Typed config objects
# ---------------------------------------------------------------------------------------------
class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class GcpConfig(_Frozen):
    project: str
    region: str = "us-central1"


class FunctionCaps(_Frozen):
    max_instances: int
    concurrency: int
    memory: str = "512Mi"
    cpu: str = "1"
    timeout_s: int = 540
    min_instances: int = 0


DEFAULT_CAPS: dict[str, FunctionCaps] = {
    "worker": FunctionCaps(max_instances=20, concurrency=5, memory="1Gi", timeout_s=120),
    "coordinator": FunctionCaps(max_instances=5, concurrency=10, memory="512Mi", timeout_s=540),
    "reconcile": FunctionCaps(max_instances=1, concurrency=1, memory="512Mi", timeout_s=900),
}
# The seeds' emergency cut (F10): 4 instances x 3 requests on the fan-out worker.
DEFAULT_EMERGENCY_PROFILE: dict[str, dict[str, int]] = {WORKER: {"max_instances": 4, "concurrency": 3}}


class FunctionsConfig(_Frozen):
    caps: dict[str, FunctionCaps]  # effective caps (emergency profile already applied)
    emergency: bool = False
    normal_caps: dict[str, FunctionCaps] = Field(default_factory=dict)  # caps without the profile
    profile_caps: dict[str, FunctionCaps] = Field(default_factory=dict)  # caps with the profile

    def longest_timeout_s(self, fn: str) -> int:
        """The function's timeout in either mode: callers' deadlines must hold when the flag flips."""
        return max(c[fn].timeout_s for c in (self.caps, self.normal_caps, self.profile_caps) if fn in c)


class PubSubConfig(_Frozen):
    topic_prefix: str
    policies: dict[str, DeliveryPolicy]  # topic key -> effective policy of its source subscriptions
    dead_letter_push_ack_s: int = 60  # ack deadline of the push readers of dead-letter topics


class Thresholds(_Frozen):
    stall_minutes: int = 30
    min_completion_pct: float = 0.0
    coverage_warning_pct: float = 95.0
    coverage_critical_pct: float = 85.0
    staging_write_failure_rate_pct: float = 10.0
    dml_rate_limit_errors: int = 5
    dml_rate_limit_window_s: int = 60


class Notifications(_Frozen):
    emails: tuple[str, ...] = ()
    slack_channel: str | None = None  # the token is the secret `batchline:slack_token`


class BigQueryConfig(_Frozen):
    location: str = "US"
    staging_location: str = "US"
    main_dataset: str = "predictions"
    main_table: str = "player_prop_predictions"
    context_table: str = "player_game_context"
    staging_dataset: str = "batchline_staging"
    staging_table_expiration_hours: int = 336
    deletion_protection: bool = True


class FirestoreConfig(_Frozen):
    create: bool = True  # false when the project already has a (default) database
    location: str = "nam5"
    database: str = "(default)"


class CapacityConfig(_Frozen):
    """What the caps and delivery policy must carry (infra/capacity.py): the largest batch a start may
    dispatch, and how long one message holds a slot at most (an upper estimate, not a mean)."""

    largest_batch_items: int = 500  # the built-in workload is ~450 players a day
    worker_item_s: float = 2.0  # one work item: Firestore reads, predict, one append, one publish
    coordinator_item_s: float = 3.0  # one completion: its BigQuery COUNT (~1 s) and Firestore writes

    def item_s(self, function: str) -> float:
        """Seconds one message holds a slot of `function` (the worker or the coordinator)."""
        return {"worker": self.worker_item_s, "coordinator": self.coordinator_item_s}[function]


class StackConfig(_Frozen):
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
