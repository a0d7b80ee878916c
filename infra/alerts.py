"""The F9 alerts as data: their keys and severities, which are log-match alerts and which thresholds on
log-based metrics, and the log filters they read (the functions' one-line JSON logs, `jsonPayload.event`
names the transition). Pure: the Monitoring component (infra/components/monitoring.py) creates them, the
rules check one policy per key, and tests/infra/test_alert_events.py checks that every event and field
an alert reads is one the code logs. Why two kinds of alert: the component's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.config_types import StackConfig

# The F9 alerts, by key. The policy set checks there is exactly one alert policy for each.
F9_ALERTS: tuple[str, ...] = (
    "staging-write-failure-rate",
    "staging-gap",
    "coverage-warning",
    "coverage-critical",
    "dead-letter-messages",
    "dml-rate-limited",
    "consolidation-failed",
    "reconciliation-gap",
    "needs-attention",
    "stale-inputs",
)
# How long a new log-based metric may take before alert policies can reference it (the API's 404 says
# "up to 10 minutes").
METRIC_SETTLE = "600s"
# Log-match alert policies must set a notification rate limit (one notification per period per incident).
LOG_MATCH_RATE_LIMIT = "300s"
DEAD_LETTER_METRIC = "pubsub.googleapis.com/subscription/dead_letter_message_count"
# Log filters that only threshold conditions need as log-based metrics; every other filter is a
# log-match condition.
THRESHOLD_METRICS: tuple[str, ...] = ("staging_write_failed", "staging_write_attempts", "dml_rate_limited")
# alert key -> the log filter (LogMetric key) of its log-match condition
LOG_MATCH_ALERTS: dict[str, str] = {
    "staging-gap": "staging_gap",
    "coverage-warning": "coverage_below_warning",
    "coverage-critical": "coverage_below_critical",
    "consolidation-failed": "consolidation_failed",
    "reconciliation-gap": "reconciliation_gap",
    "needs-attention": "needs_attention",
    "stale-inputs": "start_refused_stale_inputs",
}
# alerts whose conditions read log-based metrics: they wait for the metrics to settle
METRIC_THRESHOLD_ALERTS: tuple[str, ...] = ("staging-write-failure-rate", "dml-rate-limited")
SEVERITY = {"coverage-warning": "WARNING", "staging-gap": "WARNING", "coverage-critical": "CRITICAL",
            "consolidation-failed": "CRITICAL", "dead-letter-messages": "ERROR",
            "staging-write-failure-rate": "ERROR", "dml-rate-limited": "ERROR",
            "reconciliation-gap": "ERROR", "needs-attention": "WARNING", "stale-inputs": "ERROR"}


@dataclass(frozen=True)
class LogMetric:
    key: str
    description: str
    condition: str  # extra log filter on jsonPayload


def log_metrics(cfg: StackConfig) -> tuple[LogMetric, ...]:
    t = cfg.thresholds
    coverage = '(jsonPayload.event="consolidation_succeeded" OR jsonPayload.event="coverage_low")'
    return (
        LogMetric("staging_write_failed", "Worker staging writes that failed",
                  'jsonPayload.event="staging_write_failed"'),
        LogMetric("staging_write_attempts", "Worker staging writes, failed or succeeded",
                  '(jsonPayload.event="staging_write_failed" OR jsonPayload.event="staging_write_succeeded")'),
        LogMetric("staging_gap", "Consolidations that found expected items with nothing staged",
                  'jsonPayload.event="staging_gap" AND jsonPayload.missing_staged_items>0'),
        LogMetric("coverage_below_warning", f"Consolidations with coverage below {t.coverage_warning_pct}%",
                  f"{coverage} AND jsonPayload.coverage_pct<{t.coverage_warning_pct}"),
        LogMetric("coverage_below_critical", f"Consolidations with coverage below {t.coverage_critical_pct}%",
                  f"{coverage} AND jsonPayload.coverage_pct<{t.coverage_critical_pct}"),
        LogMetric("dml_rate_limited", "BigQuery 'Too many DML statements outstanding' errors",
                  'jsonPayload.event="dml_rate_limited"'),
        LogMetric("consolidation_failed", "Failed consolidations", 'jsonPayload.event="consolidation_failed"'),
        LogMetric("reconciliation_gap", "Daily reconciliations that found missing predictions or orphaned staging",
                  'jsonPayload.event="reconciliation_gap"'),
        LogMetric("needs_attention", "Late completions, failed dispatches, rejected messages, bad schedule rows, "
                  "refused scheduled calls",
                  '(jsonPayload.event="late_completion" OR jsonPayload.event="dispatch_failed" OR '
                  'jsonPayload.event="message_rejected" OR jsonPayload.event="context_rows_rejected" OR '
                  'jsonPayload.event="batch_stalled" OR jsonPayload.event="stall_check_failed" OR '
                  'jsonPayload.event="consolidation_lease_lost" OR jsonPayload.event="scheduled_call_refused" OR '
                  'jsonPayload.event="completion_incomplete")'),
        LogMetric("start_refused_stale_inputs", "Starts refused because the date's context rows were stale",
                  'jsonPayload.event="start_refused_stale_inputs"'),
    )
