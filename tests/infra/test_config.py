"""Stack config is typed and validated at program start; errors name the key and the range."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchline.topology import build_topology
from infra import config, harness, limits
from infra.config import ConfigError


def _set(raw: dict, path: str, value) -> dict:
    raw = copy.deepcopy(raw)
    *parents, leaf = path.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return raw


def test_stack_files_validate(dev_raw, prod_raw):
    dev = config.load(dev_raw)
    prod = config.load(prod_raw, has_slack_token=True)
    assert dev.gcp.project == "batchline-dev" and prod.gcp.project == "batchline-prod"
    assert prod.notifications.slack_channel == "#batchline-alerts"


@pytest.mark.parametrize("path, value, message", [
    ("functions.worker.max_instances", 0, "batchline:functions.worker.max_instances must be between 1 and 1000, got 0"),
    ("functions.coordinator.concurrency", 1001, "coordinator.concurrency must be between 1 and 1000"),
    ("functions.worker.timeout_s", 4000, "batchline:functions.worker.timeout_s must be between 1 and 3600"),
    ("functions.worker.memory", "3Gi", "batchline:functions.worker.memory must be one of"),
    ("functions.worker.cpu", "0.5", "batchline:functions.worker.cpu must be one of"),
    ("emergency_profile.worker.concurrency", 0, "batchline:emergency_profile.worker.concurrency must be between 1"),
    ("pubsub.ack_deadline_s", 5, "batchline:pubsub.ack_deadline_s must be between 10 and 600, got 5"),
    ("pubsub.ack_deadline_s", 601, "batchline:pubsub.ack_deadline_s must be between 10 and 600, got 601"),
    ("pubsub.max_delivery_attempts", 4, "batchline:pubsub.max_delivery_attempts must be between 5 and 100, got 4"),
    ("pubsub.max_delivery_attempts", 101, "batchline:pubsub.max_delivery_attempts must be between 5 and 100"),
    ("pubsub.min_backoff_s", -1, "batchline:pubsub.min_backoff_s must be between 0 and 600"),
    ("pubsub.per_topic.work.max_backoff_s", 700, "per_topic.work.max_backoff_s must be between 0 and 600"),
    ("pubsub.per_topic.nope", {}, "batchline:pubsub.per_topic.nope"),
    ("pubsub.retention_s", 60, "batchline:pubsub.retention_s must be between 600 and 604800"),
    ("schedules.start.cron", "every day", "batchline:schedules.start.cron must be a 5-field unix-cron"),
    ("schedules.stall_check.time_zone", "Mars/Olympus", "batchline:schedules.stall_check.time_zone must be an IANA"),
    ("schedules.retry.retry_count", 9, "batchline:schedules.retry.retry_count must be between 0 and 5"),
    ("schedules.stall_check.retry.retry_count", 9,
     "batchline:schedules.stall_check.retry.retry_count must be between 0 and 5"),
    ("schedules.start.retry.min_backoff_s", 700, "schedules.start.retry.min_backoff_s must not exceed "
                                                 "batchline:schedules.start.retry.max_backoff_s"),
    ("schedules.reconcile.retry.attempt_deadline_s", 600, "batchline:schedules.reconcile.retry.attempt_deadline_s "
                                                          "(600) must be at least batchline:functions.reconcile"),
    ("schedules.start.retry.retry_cnt", 1, "unknown key(s) batchline:schedules.start.retry.retry_cnt"),
    ("schedules.start.cron", "0 24 * * *", "schedules.start.cron must be a 5-field unix-cron expression, got "
                                           "'0 24 * * *': hour field '24': '24' is outside 0-23"),
    ("schedules.start.cron", "0 12 L * *", "day of the month field 'L'"),
    ("schedules.stall_check.cron", "@hourly", "it has 1 fields, not 5"),
    ("thresholds.coverage_critical_pct", 96, "batchline:thresholds.coverage_critical_pct (96.0) must be below"),
    ("thresholds.coverage_warning_pct", 101, "batchline:thresholds.coverage_warning_pct must be between 0.0 and 100.0"),
    ("thresholds.stall_minutes", 0, "batchline:thresholds.stall_minutes must be between 1 and 1440"),
    ("thresholds.dml_rate_limit_errors", 0, "batchline:thresholds.dml_rate_limit_errors must be between 1 and 1000"),
    ("notifications.emails", ["not-an-email"], "batchline:notifications.emails must be a list of e-mail"),
    ("bigquery.staging_location", "EU", "staging_location (EU) must equal batchline:bigquery.location"),
    ("bigquery.staging_table_expiration_hours", 24, "staging_table_expiration_hours must be between 72"),
    ("bigquery.main_dataset", "bad-name!", "batchline:bigquery.main_dataset: invalid dataset name"),
    ("gcp.project", "X", "batchline:gcp.project: invalid project id"),
    ("functions.worker.max_instancs", 3, "unknown key(s) batchline:functions.worker.max_instancs"),
    ("emergncy", True, "unknown config key(s) batchline:emergncy"),
])
def test_out_of_range_config_names_the_key(dev_raw, path, value, message):
    with pytest.raises(ConfigError) as err:
        config.load(_set(dev_raw, path, value))
    assert message in str(err.value)


def test_operators_default_empty_and_prod_lists_a_group(dev_raw, prod_raw):
    raw = copy.deepcopy(dev_raw)
    raw.pop("operators", None)
    assert config.load(raw).operators == ()
    assert config.load(prod_raw, has_slack_token=True).operators == ("group:batchline-operators@example.com",)


@pytest.mark.parametrize("members", [["user:a@example.com", "group:ops@example.com",
                                      "serviceAccount:bot@p.iam.gserviceaccount.com"], []])
def test_operators_accepts_users_groups_and_service_accounts(dev_raw, members):
    assert config.load(_set(dev_raw, "operators", members)).operators == tuple(members)


@pytest.mark.parametrize("value, message", [
    (["a@example.com"], "batchline:operators: 'a@example.com' is not an IAM member"),
    (["domain:example.com"], "batchline:operators: 'domain:example.com' is not an IAM member"),
    (["allUsers"], "batchline:operators: 'allUsers' is not an IAM member"),
    (["user:nobody"], "batchline:operators: 'user:nobody' is not an IAM member"),
    (["User:a@example.com"], "batchline:operators: 'User:a@example.com' is not an IAM member"),
    ([3], "batchline:operators: 3 is not an IAM member"),
    ("group:ops@example.com", "batchline:operators must be a list of IAM members"),
    (["user:a@example.com", "user:a@example.com"], "batchline:operators lists a member twice"),
])
def test_bad_operator_member_is_rejected_naming_the_key(dev_raw, value, message):
    with pytest.raises(ConfigError) as err:
        config.load(_set(dev_raw, "operators", value))
    assert message in str(err.value)


def test_program_start_rejects_a_bad_operator(dev_raw):
    with pytest.raises(ConfigError, match="batchline:operators: 'ops@example.com' is not an IAM member"):
        harness.run_program(_set(dev_raw, "operators", ["ops@example.com"]), stack="dev")


def test_slack_channel_without_token_names_the_secret(prod_raw):
    with pytest.raises(ConfigError, match="batchline:slack_token"):
        config.load(prod_raw, has_slack_token=False)


def test_every_stack_needs_a_channel(dev_raw):
    with pytest.raises(ConfigError, match="batchline:notifications needs at least one"):
        config.load(_set(dev_raw, "notifications", {"emails": []}))


def test_program_start_fails_on_bad_config(dev_raw):
    """The real program, through pulumi.Config, refuses out-of-range values before creating anything."""
    with pytest.raises(ConfigError, match="batchline:pubsub.max_delivery_attempts must be between 5 and 100"):
        harness.run_program(_set(dev_raw, "pubsub.max_delivery_attempts", 200), stack="dev")


@given(st.integers(min_value=-5, max_value=1200))
def test_max_instances_range_is_exactly_enforced(n):
    raw = {"gcp": {"project": "batchline-dev"}, "functions": {"worker": {"max_instances": n}},
           "schedules": {k: {"cron": "0 1 * * *"} for k in ("start", "stall_check", "reconcile")},
           "notifications": {"emails": ["a@example.com"]},
           "capacity": {"largest_batch_items": 1}}  # the range alone, not what one instance carries
    if limits.MAX_INSTANCES.holds(n):
        assert config.load(raw).functions.caps["worker"].max_instances == n
    else:
        with pytest.raises(ConfigError, match="batchline:functions.worker.max_instances"):
            config.load(raw)


def test_topology_defaults_survive_unless_overridden(dev_raw, prod_raw):
    dev = config.load(dev_raw)
    # dev sets no ack deadlines: the shared topology's per-topic values stay, raised where a push
    # subscription's target runs longer (worker 120 s + 30 s margin; coordinator 540 s + 30 s)
    assert dev.pubsub.policies["work"].ack_deadline_s == 150
    assert dev.pubsub.policies["completions"].ack_deadline_s == 570
    assert dev.pubsub.policies["consolidation"].ack_deadline_s == 600
    assert dev.pubsub.policies["summary"].ack_deadline_s == 60  # pull: the topology's value
    assert dev.pubsub.dead_letter_push_ack_s == 570
    prod = config.load(_set(prod_raw, "pubsub.per_topic.summary", {"ack_deadline_s": 30}), has_slack_token=True)
    assert prod.pubsub.policies["summary"].ack_deadline_s == 30
    assert prod.pubsub.policies["work"].ack_deadline_s == 180  # the stack file's value
    assert prod.pubsub.policies["work"].max_delivery_attempts == 10  # stack-wide value


@pytest.mark.parametrize("key", ["emergncy", "slack_tokn", "function"])
def test_program_start_rejects_unknown_top_level_key(dev_raw, key):
    """`load` rejects unknown top-level keys, and the program must hand it every `batchline:` key the
    engine passed, not only those it reads (issue 7 item 10)."""
    raw = copy.deepcopy(dev_raw)
    raw[key] = True
    with pytest.raises(ConfigError, match=f"unknown config key\\(s\\) batchline:{key}"):
        harness.run_program(raw, stack="dev")


# --- Google's memory/CPU table (issue 7 item 4) ------------------------------------------------
@pytest.mark.parametrize("memory, cpu, ok", [
    ("1Gi", "0.583", True), ("512Mi", "0.333", True), ("2Gi", "1", True), ("4Gi", "1", True),
    ("8Gi", "2", True), ("16Gi", "4", True), ("32Gi", "8", True), ("256Mi", "1", True),
    ("2Gi", "0.583", False),   # 2 GiB needs 1 vCPU
    ("8Gi", "1", False),       # more than 4 GiB needs 2 vCPU
    ("16Gi", "2", False),      # more than 8 GiB needs 4 vCPU
    ("32Gi", "4", False),      # more than 24 GiB needs 8 vCPU
    ("256Mi", "4", False),     # 4 vCPU needs at least 2 GiB
    ("1Gi", "8", False),       # 8 vCPU needs at least 4 GiB
    ("1Gi", "0.333", False),   # below 0.5 vCPU at most 512 MiB (and 1 GiB needs .583)
])
def test_memory_cpu_pairs_follow_googles_table(dev_raw, memory, cpu, ok):
    raw = _set(_set(_set(dev_raw, "functions.reconcile.memory", memory), "functions.reconcile.cpu", cpu),
               "functions.reconcile.concurrency", 1)
    if ok:
        assert config.load(raw).functions.caps["reconcile"].memory == memory
    else:
        with pytest.raises(ConfigError, match="functions.reconcile.memory / batchline:functions.reconcile.cpu: "
                                              "Google rejects this pair"):
            config.load(raw)


def test_emergency_profile_pairs_are_checked_too(dev_raw):
    with pytest.raises(ConfigError, match="emergency_profile.worker.memory .* Google rejects"):
        config.load(_set(dev_raw, "emergency_profile", {"worker": {"memory": "8Gi"}}))


# --- deadlines (issue 7 items 5 and 6) ----------------------------------------------------------
def test_scheduler_deadline_default_outlasts_the_reconcile_timeout(dev_raw):
    cfg = config.load(dev_raw)
    assert cfg.functions.caps["reconcile"].timeout_s == 900
    assert cfg.schedules.retry.attempt_deadline_s >= 900 + limits.DEADLINE_MARGIN_S


def test_scheduler_deadline_shorter_than_a_target_timeout_is_rejected(dev_raw):
    with pytest.raises(ConfigError, match=r"schedules.retry.attempt_deadline_s \(600\) must be at least "
                                          r"batchline:functions.reconcile.timeout_s \(900\) \+ 30 s"):
        config.load(_set(dev_raw, "schedules.retry.attempt_deadline_s", 600))
    with pytest.raises(ConfigError, match="functions.coordinator.timeout_s"):
        config.load(_set(_set(dev_raw, "functions.reconcile.timeout_s", 60), "functions.coordinator.timeout_s",
                         1790))


@pytest.mark.parametrize("path, value, message", [
    ("pubsub.per_topic.work.ack_deadline_s", 120,
     r"pubsub.per_topic.work.ack_deadline_s \(120\) must be at least batchline:functions.worker.timeout_s \(120\)"),
    ("pubsub.ack_deadline_s", 300, r"pubsub.ack_deadline_s \(300\) must be at least "
                                   r"batchline:functions.coordinator.timeout_s \(540\)"),
    ("functions.coordinator.timeout_s", 580, r"functions.coordinator.timeout_s \(580\) \+ 30 s margin exceeds the "
                                             r"600 s maximum ack deadline"),
    ("emergency_profile.worker.timeout_s", 200,
     r"pubsub.per_topic.work.ack_deadline_s \(180\) must be at least batchline:functions.worker.timeout_s \(200\)"),
])
def test_push_ack_deadline_shorter_than_the_target_timeout_is_rejected(prod_raw, path, value, message):
    with pytest.raises(ConfigError, match=message):
        config.load(_set(prod_raw, path, value), has_slack_token=True)


def test_every_push_subscription_outlasts_its_target(dev_raw, prod_raw):
    for raw in (dev_raw, prod_raw):
        cfg = config.load(raw, has_slack_token=True)
        for t in build_topology(cfg.pubsub.topic_prefix).topics:
            for s in t.subscriptions:
                if s.push:
                    timeout = cfg.functions.caps[s.push.function].timeout_s
                    assert cfg.pubsub.policies[t.key].ack_deadline_s >= timeout + limits.DEADLINE_MARGIN_S


def test_config_objects_are_typed_and_closed():
    """The objects load() builds are strict pydantic models: a loader that passes a string for a
    number, or a field that does not exist, fails at once instead of deploying it."""
    import pydantic

    from infra.config_types import FunctionCaps, PubSubConfig

    with pytest.raises(pydantic.ValidationError):
        FunctionCaps(max_instances="3", concurrency=1)
    with pytest.raises(pydantic.ValidationError):
        FunctionCaps(max_instances=3, concurrency=1, timeout=60)
    with pytest.raises(pydantic.ValidationError):
        PubSubConfig(topic_prefix="x", policies={}, dead_letter_push_ack_s="570")
    caps = FunctionCaps(max_instances=3, concurrency=1)
    with pytest.raises(pydantic.ValidationError):
        caps.max_instances = 4  # frozen


def test_a_jobs_own_retry_keys_override_the_stack_wide_ones_for_it_alone(dev_raw):
    raw = _set(dev_raw, "schedules.stall_check.retry", {"retry_count": 0, "attempt_deadline_s": 600})
    s = config.load(raw).schedules
    assert (s.stall_check.retry.retry_count, s.stall_check.retry.attempt_deadline_s) == (0, 600)
    assert s.stall_check.retry.min_backoff_s == s.retry.min_backoff_s, "unset keys come from schedules.retry"
    assert s.start.retry == s.reconcile.retry == s.retry and s.retry.retry_count == 1


@pytest.mark.parametrize("expr", ["* * * * *", "* 10-23 * * *", "0 9 1,15 * 1-5", "*/15 10-23 * * MON-FRI",
                                  "0 0 * JAN,DEC SUN", "0 0 * * 7", "0-59/5 * * * *", "30 4 * * *"])
def test_googles_unix_cron_is_accepted(dev_raw, expr):
    assert config.load(_set(dev_raw, "schedules.start.cron", expr)).schedules.start.cron == expr
