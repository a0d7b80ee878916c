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

from infra.alerts import (
    DEAD_LETTER_METRIC,
    F9_ALERTS,
    LOG_MATCH_ALERTS,
    LOG_MATCH_RATE_LIMIT,
    METRIC_SETTLE,
    METRIC_THRESHOLD_ALERTS,
    SEVERITY,
    THRESHOLD_METRICS,
    log_metrics,
)
from infra.components.runbooks import runbooks
from infra.config_types import StackConfig
from infra.labels import ALERT_LABEL, ALERT_STACK_PREFIX_LABEL


@dataclass
class MonitoringArgs:
    cfg: StackConfig
    function_names: list[str]  # the deployed functions (their Cloud Run services) the logs come from
    dlq_subscriptions: list[str]  # the dead-letter pull subscriptions (the runbooks pull them)
    source_subscriptions: list[str]  # the dead-lettering subscriptions whose new dead letters page
    slack_token: pulumi.Input[str] | None = None


class Monitoring(pulumi.ComponentResource):
    channels: list[gcp.monitoring.NotificationChannel]
    metrics: dict[str, gcp.logging.Metric]  # the log-based metrics threshold alerts count
    alerts: dict[str, gcp.monitoring.AlertPolicy]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:Monitoring", name, None, opts)
        self._name, self._args = name, args
        self._project, self._prefix = args.cfg.gcp.project, args.cfg.pubsub.topic_prefix
        services = " OR ".join(f'resource.labels.service_name="{n}"' for n in args.function_names)
        metrics = log_metrics(args.cfg)
        self._filters = {m.key: f'resource.type="cloud_run_revision" AND ({services}) AND {m.condition}'
                         for m in metrics}
        self._descriptions = {m.key: m.description for m in metrics}
        self.channels = self._notification_channels()
        self._create_metrics()
        conditions = {**self._threshold_conditions(), **self._log_match_conditions()}
        books = runbooks(args.cfg, args.dlq_subscriptions)
        self.alerts = {key: self._alert_policy(key, conditions[key], *books[key]) for key in F9_ALERTS}
        self.register_outputs({"alerts": {k: a.name for k, a in self.alerts.items()},
                               "metrics": {k: m.name for k, m in self.metrics.items()}})

    def _notification_channels(self) -> list[gcp.monitoring.NotificationChannel]:
        notifications, child = self._args.cfg.notifications, pulumi.ResourceOptions(parent=self)
        channels = [gcp.monitoring.NotificationChannel(
            f"{self._name}-email-{i}", project=self._project, type="email",
            display_name=f"batchline {self._prefix}: {email}", labels={"email_address": email}, opts=child)
            for i, email in enumerate(notifications.emails)]
        if notifications.slack_channel:
            channels.append(gcp.monitoring.NotificationChannel(
                f"{self._name}-slack", project=self._project, type="slack",
                display_name=f"batchline {self._prefix}: {notifications.slack_channel}",
                labels={"channel_name": notifications.slack_channel},
                sensitive_labels={"auth_token": self._args.slack_token}, opts=child))
        return channels

    def _create_metrics(self) -> None:
        """The log-based metrics threshold alerts count, and the wait between creating them and the
        first alert policy that references them."""
        self.metrics = {key: gcp.logging.Metric(
            f"{self._name}-{key}", project=self._project, name=f"{self._prefix}/{key}",
            description=self._descriptions[key], filter=self._filters[key],
            metric_descriptor={"metric_kind": "DELTA", "value_type": "INT64", "unit": "1",
                               "labels": [{"key": "batch_id", "value_type": "STRING"}]},
            label_extractors={"batch_id": "EXTRACT(jsonPayload.batch_id)"},
            opts=pulumi.ResourceOptions(parent=self)) for key in THRESHOLD_METRICS}
        self.metrics_settled = time.Sleep(
            f"{self._name}-metrics-settle", create_duration=METRIC_SETTLE,
            triggers={"metrics": ",".join(sorted(THRESHOLD_METRICS))},
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.metrics.values())))

    def _metric_filter(self, key: str) -> pulumi.Output[str]:
        return pulumi.Output.concat('metric.type="logging.googleapis.com/user/', self.metrics[key].name,
                                    '" AND resource.type="cloud_run_revision"')

    def _count(self, key: str, window_s: int = 300, above: float = 0) -> dict:
        return {"filter": self._metric_filter(key), "comparison": "COMPARISON_GT", "threshold_value": above,
                "duration": "0s", "trigger": {"count": 1},
                "aggregations": [{"alignment_period": f"{window_s}s", "per_series_aligner": "ALIGN_SUM",
                                  "cross_series_reducer": "REDUCE_SUM"}]}

    def _threshold_conditions(self) -> dict[str, list[dict]]:
        t = self._args.cfg.thresholds
        ratio = self._count("staging_write_failed", above=t.staging_write_failure_rate_pct / 100)
        ratio.update(denominator_filter=self._metric_filter("staging_write_attempts"),
                     denominator_aggregations=ratio["aggregations"])
        return {
            "staging-write-failure-rate": [{"display_name": f"failed / attempted staging writes > "
                                                            f"{t.staging_write_failure_rate_pct}% over 5 min",
                                            "condition_threshold": ratio}],
            # threshold conditions only support GT/LT: "> n - 0.5" is ">= n" on an integer count
            "dml-rate-limited": [{"display_name": f">= {t.dml_rate_limit_errors} DML rate-limit errors in "
                                                  f"{t.dml_rate_limit_window_s}s",
                                  "condition_threshold": self._count("dml_rate_limited", t.dml_rate_limit_window_s,
                                                                     t.dml_rate_limit_errors - 0.5)}],
            "dead-letter-messages": [self._new_dead_letters(sub) for sub in self._args.source_subscriptions],
        }

    @staticmethod
    def _new_dead_letters(sub: str) -> dict:
        """Pub/Sub's own count of messages `sub` just dead-lettered, as a delta."""
        return {"display_name": f"new dead letters from {sub}",
                "condition_threshold": {
                    "filter": f'metric.type="{DEAD_LETTER_METRIC}" AND resource.type="pubsub_subscription" '
                              f'AND resource.labels.subscription_id="{sub}"',
                    "comparison": "COMPARISON_GT", "threshold_value": 0, "duration": "0s",
                    "trigger": {"count": 1},
                    "aggregations": [{"alignment_period": "60s", "per_series_aligner": "ALIGN_DELTA",
                                      "cross_series_reducer": "REDUCE_SUM"}]}}

    def _log_match_conditions(self) -> dict[str, list[dict]]:
        return {key: [{"display_name": self._descriptions[log_key],
                       "condition_matched_log": {"filter": self._filters[log_key],
                                                 "label_extractors": {"batch_id": "EXTRACT(jsonPayload.batch_id)"}}}]
                for key, log_key in LOG_MATCH_ALERTS.items()}

    def _alert_policy(self, key: str, conditions: list[dict], subject: str, content: str) -> gcp.monitoring.AlertPolicy:
        """One F9 alert: its conditions, the stack's channels, its runbook (subject and content)."""
        strategy: dict = {"auto_close": "86400s"}
        if key in LOG_MATCH_ALERTS:
            strategy["notification_rate_limit"] = {"period": LOG_MATCH_RATE_LIMIT}
        waits = [self.metrics_settled] if key in METRIC_THRESHOLD_ALERTS else []
        return gcp.monitoring.AlertPolicy(
            f"{self._name}-{key}", project=self._project, display_name=f"[{self._prefix}] {subject}", combiner="OR",
            severity=SEVERITY[key], conditions=conditions, notification_channels=[c.name for c in self.channels],
            documentation={"subject": subject, "content": content, "mime_type": "text/markdown"},
            alert_strategy=strategy,
            user_labels={ALERT_LABEL: key.replace("-", "_"), ALERT_STACK_PREFIX_LABEL: self._prefix},
            opts=pulumi.ResourceOptions(parent=self, depends_on=waits))
