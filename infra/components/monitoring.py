"""Cloud Monitoring: notification channels and one alert policy per F9 alert, fed by the functions'
structured logs (one JSON line per state transition, `jsonPayload.event` names it) and by Pub/Sub's own
metrics. Every policy notifies the stack's channels and carries a runbook (`runbooks.py`).

The first `pulumi up` on a new project must succeed. The Monitoring API answers 404 ("Cannot find
metric(s) ... it could take up to 10 minutes to become available") to an alert policy on a
log-based metric created minutes before, and `depends_on` only orders the two calls (a long-standing,
still-open provider issue: https://github.com/hashicorp/terraform-provider-google/issues/11102). So:

* single-event alerts (a consolidation failed, a gap, low coverage, an event needing a human) are
  log-match conditions (`condition_matched_log`) on the log filter itself: no metric, nothing to wait
  for (https://cloud.google.com/logging/docs/alerting/log-based-alerts);
* the alerts that need a rate or a count over a window (staging write failure rate, DML rate limit)
  stay metric-threshold conditions on log-based metrics, and their policies wait for a
  `pulumiverse_time.Sleep` that starts after the metrics exist and lasts the 10 minutes the API
  names. The sleep is created once; it is replaced (so waits again) only when the set of metrics
  changes;
* new dead letters are counted by Pub/Sub's built-in `subscription/dead_letter_message_count` of
  each source subscription (a delta: the alert closes by itself and pages again for the next dead
  letter), never the backlog of the dead-letter pull subscriptions, which operators keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumiverse_time as time

from infra.components.runbooks import runbooks
from infra.config import StackConfig

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
ALERT_LABEL = "batchline_alert"  # user label carrying the key on each policy
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


class Monitoring(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, function_names: list[str], dlq_subscriptions: list[str],
                 source_subscriptions: list[str], slack_token: pulumi.Input[str] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        project, prefix, t = cfg.gcp.project, cfg.pubsub.topic_prefix, cfg.thresholds

        self.channels: list[gcp.monitoring.NotificationChannel] = []
        for i, email in enumerate(cfg.notifications.emails):
            self.channels.append(gcp.monitoring.NotificationChannel(
                f"{name}-email-{i}", project=project, type="email", display_name=f"batchline {prefix}: {email}",
                labels={"email_address": email}, opts=child))
        if cfg.notifications.slack_channel:
            self.channels.append(gcp.monitoring.NotificationChannel(
                f"{name}-slack", project=project, type="slack",
                display_name=f"batchline {prefix}: {cfg.notifications.slack_channel}",
                labels={"channel_name": cfg.notifications.slack_channel},
                sensitive_labels={"auth_token": slack_token}, opts=child))
        channel_ids = [c.name for c in self.channels]

        services = " OR ".join(f'resource.labels.service_name="{n}"' for n in function_names)
        filters = {m.key: f'resource.type="cloud_run_revision" AND ({services}) AND {m.condition}'
                   for m in log_metrics(cfg)}
        descriptions = {m.key: m.description for m in log_metrics(cfg)}
        self.metrics: dict[str, gcp.logging.Metric] = {}
        for key in THRESHOLD_METRICS:
            self.metrics[key] = gcp.logging.Metric(
                f"{name}-{key}", project=project, name=f"{prefix}/{key}", description=descriptions[key],
                filter=filters[key],
                metric_descriptor={"metric_kind": "DELTA", "value_type": "INT64", "unit": "1",
                                   "labels": [{"key": "batch_id", "value_type": "STRING"}]},
                label_extractors={"batch_id": "EXTRACT(jsonPayload.batch_id)"},
                opts=child)
        # The wait between creating the metrics and the first alert policy that references them.
        self.metrics_settled = time.Sleep(
            f"{name}-metrics-settle", create_duration=METRIC_SETTLE,
            triggers={"metrics": ",".join(sorted(THRESHOLD_METRICS))},
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.metrics.values())))

        def metric_filter(key: str) -> pulumi.Output[str]:
            return pulumi.Output.concat('metric.type="logging.googleapis.com/user/', self.metrics[key].name,
                                        '" AND resource.type="cloud_run_revision"')

        def count(key: str, window_s: int = 300, above: float = 0) -> dict:
            return {"filter": metric_filter(key), "comparison": "COMPARISON_GT", "threshold_value": above,
                    "duration": "0s", "trigger": {"count": 1},
                    "aggregations": [{"alignment_period": f"{window_s}s", "per_series_aligner": "ALIGN_SUM",
                                      "cross_series_reducer": "REDUCE_SUM"}]}

        ratio = count("staging_write_failed", above=t.staging_write_failure_rate_pct / 100)
        ratio.update(denominator_filter=metric_filter("staging_write_attempts"),
                     denominator_aggregations=ratio["aggregations"])
        conditions: dict[str, list[dict]] = {
            "staging-write-failure-rate": [{"display_name": f"failed / attempted staging writes > "
                                                            f"{t.staging_write_failure_rate_pct}% over 5 min",
                                            "condition_threshold": ratio}],
            # threshold conditions only support GT/LT: "> n - 0.5" is ">= n" on an integer count
            "dml-rate-limited": [{"display_name": f">= {t.dml_rate_limit_errors} DML rate-limit errors in "
                                                  f"{t.dml_rate_limit_window_s}s",
                                  "condition_threshold": count("dml_rate_limited", t.dml_rate_limit_window_s,
                                                               t.dml_rate_limit_errors - 0.5)}],
            "dead-letter-messages": [
                {"display_name": f"new dead letters from {sub}",
                 "condition_threshold": {
                     "filter": f'metric.type="{DEAD_LETTER_METRIC}" AND resource.type="pubsub_subscription" '
                               f'AND resource.labels.subscription_id="{sub}"',
                     "comparison": "COMPARISON_GT", "threshold_value": 0, "duration": "0s",
                     "trigger": {"count": 1},
                     "aggregations": [{"alignment_period": "60s", "per_series_aligner": "ALIGN_DELTA",
                                       "cross_series_reducer": "REDUCE_SUM"}]}}
                for sub in source_subscriptions],
        }
        for key, log_key in LOG_MATCH_ALERTS.items():
            conditions[key] = [{"display_name": descriptions[log_key],
                                "condition_matched_log": {
                                    "filter": filters[log_key],
                                    "label_extractors": {"batch_id": "EXTRACT(jsonPayload.batch_id)"}}}]
        books = runbooks(cfg, dlq_subscriptions)
        self.alerts: dict[str, gcp.monitoring.AlertPolicy] = {}
        for key in F9_ALERTS:
            subject, content = books[key]
            log_match = key in LOG_MATCH_ALERTS
            strategy: dict = {"auto_close": "86400s"}
            if log_match:
                strategy["notification_rate_limit"] = {"period": LOG_MATCH_RATE_LIMIT}
            on_metrics = key in METRIC_THRESHOLD_ALERTS
            self.alerts[key] = gcp.monitoring.AlertPolicy(
                f"{name}-{key}", project=project, display_name=f"[{prefix}] {subject}", combiner="OR",
                severity=SEVERITY[key], conditions=conditions[key], notification_channels=channel_ids,
                documentation={"subject": subject, "content": content, "mime_type": "text/markdown"},
                alert_strategy=strategy,
                user_labels={ALERT_LABEL: key.replace("-", "_"), "stack_prefix": prefix},
                opts=pulumi.ResourceOptions(parent=self,
                                            depends_on=[self.metrics_settled] if on_metrics else []))
        self.register_outputs({"alerts": {k: a.name for k, a in self.alerts.items()},
                               "metrics": {k: m.name for k, m in self.metrics.items()}})
