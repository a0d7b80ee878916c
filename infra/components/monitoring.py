"""Cloud Monitoring: notification channels, log-based metrics fed by the functions' structured logs
(one JSON line per state transition, `jsonPayload.event` names it), and one alert policy per F9 alert.
Every policy notifies the stack's channels and carries a runbook telling the on-call what to run."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

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
        LogMetric("staging_gap", "Consolidations that found missing staging tables",
                  'jsonPayload.event="staging_gap" AND jsonPayload.missing_staging_tables>0'),
        LogMetric("coverage_below_warning", f"Consolidations with coverage below {t.coverage_warning_pct}%",
                  f"{coverage} AND jsonPayload.coverage_pct<{t.coverage_warning_pct}"),
        LogMetric("coverage_below_critical", f"Consolidations with coverage below {t.coverage_critical_pct}%",
                  f"{coverage} AND jsonPayload.coverage_pct<{t.coverage_critical_pct}"),
        LogMetric("dml_rate_limited", "BigQuery 'Too many DML statements outstanding' errors",
                  'jsonPayload.event="dml_rate_limited"'),
        LogMetric("consolidation_failed", "Failed consolidations", 'jsonPayload.event="consolidation_failed"'),
        LogMetric("item_dead_lettered", "Work items that reached a dead-letter topic",
                  'jsonPayload.event="item_dead_lettered"'),
        LogMetric("batch_stalled", "Batches the stall check found stalled", 'jsonPayload.event="batch_stalled"'),
        LogMetric("reconciliation_gap", "Daily reconciliations that found missing predictions or orphaned staging",
                  'jsonPayload.event="reconciliation_gap"'),
        LogMetric("needs_attention", "Late completions, failed dispatches, rejected messages, bad schedule rows",
                  '(jsonPayload.event="late_completion" OR jsonPayload.event="dispatch_failed" OR '
                  'jsonPayload.event="message_rejected" OR jsonPayload.event="context_rows_rejected" OR '
                  'jsonPayload.event="batch_stalled" OR jsonPayload.event="stall_check_failed" OR '
                  'jsonPayload.event="consolidation_lease_lost")'),
        LogMetric("start_refused_stale_inputs", "Starts refused because the date's context rows were stale",
                  'jsonPayload.event="start_refused_stale_inputs"'),
    )


def runbooks(cfg: StackConfig, dlq_subscriptions: list[str]) -> dict[str, tuple[str, str]]:
    """alert key -> (subject, markdown runbook)."""
    p, prefix, bq, t = cfg.gcp.project, cfg.pubsub.topic_prefix, cfg.bigquery, cfg.thresholds
    logs = (f"gcloud logging read 'resource.type=\"cloud_run_revision\" AND "
            f"resource.labels.service_name:\"{prefix}-\" AND jsonPayload.event=\"{{event}}\"' "
            f"--project={p} --freshness=2h --format=json")
    stall = f"gcloud scheduler jobs run {prefix}-stall-check --project={p} --location={cfg.gcp.region}"
    reconcile = f"gcloud scheduler jobs run {prefix}-reconcile --project={p} --location={cfg.gcp.region}"
    pulls = "\n".join(f"gcloud pubsub subscriptions pull {s} --project={p} --limit=20 --format=json"
                      for s in dlq_subscriptions)
    return {
        "staging-write-failure-rate": (
            f"batchline: staging write failures above {t.staging_write_failure_rate_pct}%",
            "Workers are failing to write their staging tables (F1). Failed items are retried by Pub/Sub and "
            "dead-lettered after the maximum attempts, nothing is acknowledged without a durable write.\n\n"
            f"1. See the errors: `{logs.format(event='staging_write_failed')}`\n"
            f"2. Check the staging dataset exists and quotas: `bq show --project_id={p} {bq.staging_dataset}`\n"
            "3. If the cause is load (quota, DML), apply the emergency profile: "
            "`pulumi config set batchline:emergency true && pulumi up`.\n"
            f"4. After the fix, re-dispatch missing items: `{stall}`"),
        "staging-gap": (
            "batchline: staging tables missing at consolidation",
            "The coordinator consolidated a batch with fewer staging tables than expected items; the gap was "
            "recorded with the missing item ids (F4/F9).\n\n"
            f"1. Which items: `{logs.format(event='staging_gap')}` (field missing_staging_tables / items)\n"
            f"2. Re-dispatch them: `{stall}`\n3. Confirm with the daily reconciliation: `{reconcile}`"),
        "coverage-warning": (
            f"batchline: coverage below {t.coverage_warning_pct}%",
            "A consolidation produced fewer predictions than expected.\n\n"
            f"1. Details: `{logs.format(event='consolidation_succeeded')}` (coverage_pct, batch_id)\n"
            f"2. Re-dispatch the missing items: `{stall}`\n3. Reconcile: `{reconcile}`"),
        "coverage-critical": (
            f"batchline: coverage below {t.coverage_critical_pct}% (critical)",
            "A consolidation covered far fewer players than scheduled. Treat as an outage.\n\n"
            f"1. Details: `{logs.format(event='consolidation_succeeded')}`\n"
            f"2. Look for failing writes: `{logs.format(event='staging_write_failed')}`\n"
            f"3. Dead letters: \n```\n{pulls}\n```\n4. Re-dispatch: `{stall}`, then `{reconcile}`"),
        "dead-letter-messages": (
            "batchline: messages in a dead-letter subscription",
            "Messages exhausted their delivery attempts. They are kept in the dead-letter pull subscriptions "
            "(do not ack them before the cause is known).\n\n"
            f"1. Inspect (without ack):\n```\n{pulls}\n```\n"
            f"2. Why: `{logs.format(event='item_dead_lettered')}`\n"
            f"3. After the fix, re-dispatch the items: `{stall}`"),
        "dml-rate-limited": (
            f"batchline: BigQuery DML rate limit ({t.dml_rate_limit_errors} in {t.dml_rate_limit_window_s}s)",
            "BigQuery answered 'Too many DML statements outstanding'. Only the coordinator's one MERGE per "
            "batch should run DML on the main table (F2); something else is mutating it.\n\n"
            f"1. Who: `{logs.format(event='dml_rate_limited')}`\n"
            f"2. Running jobs: `bq ls --jobs=true --all=true --max_results=50 --project_id={p}`\n"
            "3. Reduce load: `pulumi config set batchline:emergency true && pulumi up`"),
        "consolidation-failed": (
            "batchline: consolidation failed",
            "The consolidation MERGE failed; staging tables are kept (F6), nothing is lost.\n\n"
            f"1. Error: `{logs.format(event='consolidation_failed')}` (schema drift is reported with column "
            "names, F5)\n"
            f"2. Staging tables kept: `bq ls --max_results=1000 {p}:{bq.staging_dataset}`\n"
            "3. After the fix, consolidate again (a new MERGE generation over the kept tables): "
            f"`gcloud pubsub topics publish {prefix}-consolidation --project={p} "
            "--message='{\"v\":1,\"batch_id\":\"<BATCH_ID>\",\"reason\":\"manual\"}'`"),
        "reconciliation-gap": (
            "batchline: daily reconciliation found a gap",
            "The schedule (context table) and the main table disagree for a date, or staging tables outlived "
            "their batch. Small gaps were re-dispatched as a new batch automatically (`action` in the log).\n\n"
            f"1. What: `{logs.format(event='reconciliation_gap')}` (incomplete_items, orphaned_staging_tables)\n"
            f"2. Orphaned staging tables hold rows not in the main table: `bq ls --max_results=1000 "
            f"{p}:{bq.staging_dataset}`\n"
            f"3. Re-run the check after a fix: `{reconcile}`"),
        "needs-attention": (
            "batchline: an event needs a human",
            "A completion arrived after its batch was consolidated (its staging table is kept), a dispatch "
            "failed, a dead-lettered message could not be attributed to an item (kept in Firestore "
            "`rejected_messages`), or schedule rows were invalid.\n\n"
            f"1. Which: `{logs.format(event='late_completion')}` (likewise dispatch_failed, message_rejected, "
            "context_rows_rejected)\n"
            f"2. Late rows are picked up by the daily reconciliation: `{reconcile}`"),
        "stale-inputs": (
            "batchline: start refused, context rows stale",
            "A start found the date's context rows loaded longer ago than "
            "BATCHLINE_CONTEXT_MAX_AGE_HOURS (or without `loaded_at`), answered 424 and ran nothing: the "
            "upstream load is late or failed.\n\n"
            f"1. Which date, newest load time, allowed age: `{logs.format(event='start_refused_stale_inputs')}`\n"
            f"2. Check the upstream load of `{bq.main_dataset}.{bq.context_table}` for that date (`loaded_at`).\n"
            f"3. After it reloads, start again: `gcloud scheduler jobs run {prefix}-start --project={p} "
            f"--location={cfg.gcp.region}`"),
    }


class Monitoring(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, function_names: list[str], dlq_subscriptions: list[str],
                 slack_token: pulumi.Input[str] | None = None,
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
        self.metrics: dict[str, gcp.logging.Metric] = {}
        for m in log_metrics(cfg):
            self.metrics[m.key] = gcp.logging.Metric(
                f"{name}-{m.key}", project=project, name=f"{prefix}/{m.key}", description=m.description,
                filter=f'resource.type="cloud_run_revision" AND ({services}) AND {m.condition}',
                metric_descriptor={"metric_kind": "DELTA", "value_type": "INT64", "unit": "1",
                                   "labels": [{"key": "batch_id", "value_type": "STRING"}]},
                label_extractors={"batch_id": "EXTRACT(jsonPayload.batch_id)"},
                opts=child)

        def log_filter(key: str) -> pulumi.Output[str]:
            return pulumi.Output.concat('metric.type="logging.googleapis.com/user/', self.metrics[key].name,
                                        '" AND resource.type="cloud_run_revision"')

        def count(key: str, window_s: int = 300, above: float = 0) -> dict:
            return {"filter": log_filter(key), "comparison": "COMPARISON_GT", "threshold_value": above,
                    "duration": "0s", "trigger": {"count": 1},
                    "aggregations": [{"alignment_period": f"{window_s}s", "per_series_aligner": "ALIGN_SUM",
                                      "cross_series_reducer": "REDUCE_SUM"}]}

        ratio = count("staging_write_failed", above=t.staging_write_failure_rate_pct / 100)
        ratio.update(denominator_filter=log_filter("staging_write_attempts"),
                     denominator_aggregations=ratio["aggregations"])
        conditions: dict[str, list[dict]] = {
            "staging-write-failure-rate": [{"display_name": f"failed / attempted staging writes > "
                                                            f"{t.staging_write_failure_rate_pct}% over 5 min",
                                            "condition_threshold": ratio}],
            "staging-gap": [{"display_name": "staging table gap > 0 at consolidation",
                             "condition_threshold": count("staging_gap")}],
            "coverage-warning": [{"display_name": f"coverage < {t.coverage_warning_pct}%",
                                  "condition_threshold": count("coverage_below_warning")}],
            "coverage-critical": [{"display_name": f"coverage < {t.coverage_critical_pct}%",
                                   "condition_threshold": count("coverage_below_critical")}],
            "dead-letter-messages": [
                {"display_name": f"undelivered messages in {sub} > 0",
                 "condition_threshold": {
                     "filter": 'metric.type="pubsub.googleapis.com/subscription/num_undelivered_messages" AND '
                               f'resource.type="pubsub_subscription" AND resource.labels.subscription_id="{sub}"',
                     "comparison": "COMPARISON_GT", "threshold_value": 0, "duration": "0s",
                     "trigger": {"count": 1},
                     "aggregations": [{"alignment_period": "60s", "per_series_aligner": "ALIGN_MAX"}]}}
                for sub in dlq_subscriptions],
            # threshold conditions only support GT/LT: "> n - 0.5" is ">= n" on an integer count
            "dml-rate-limited": [{"display_name": f">= {t.dml_rate_limit_errors} DML rate-limit errors in "
                                                  f"{t.dml_rate_limit_window_s}s",
                                  "condition_threshold": count("dml_rate_limited", t.dml_rate_limit_window_s,
                                                               t.dml_rate_limit_errors - 0.5)}],
            "consolidation-failed": [{"display_name": "consolidation failed",
                                      "condition_threshold": count("consolidation_failed")}],
            "reconciliation-gap": [{"display_name": "reconciliation gap > 0",
                                    "condition_threshold": count("reconciliation_gap", 3600)}],
            "needs-attention": [{"display_name": "late completion, failed dispatch or rejected message",
                                 "condition_threshold": count("needs_attention")}],
            "stale-inputs": [{"display_name": "start refused: stale context rows",
                              "condition_threshold": count("start_refused_stale_inputs")}],
        }
        severity = {"coverage-warning": "WARNING", "staging-gap": "WARNING", "coverage-critical": "CRITICAL",
                    "consolidation-failed": "CRITICAL", "dead-letter-messages": "ERROR",
                    "staging-write-failure-rate": "ERROR", "dml-rate-limited": "ERROR",
                    "reconciliation-gap": "ERROR", "needs-attention": "WARNING",
                    "stale-inputs": "ERROR"}
        books = runbooks(cfg, dlq_subscriptions)
        self.alerts: dict[str, gcp.monitoring.AlertPolicy] = {}
        for key in F9_ALERTS:
            subject, content = books[key]
            self.alerts[key] = gcp.monitoring.AlertPolicy(
                f"{name}-{key}", project=project, display_name=f"[{prefix}] {subject}", combiner="OR",
                severity=severity[key], conditions=conditions[key], notification_channels=channel_ids,
                documentation={"subject": subject, "content": content, "mime_type": "text/markdown"},
                alert_strategy={"auto_close": "86400s"},
                user_labels={ALERT_LABEL: key.replace("-", "_"), "stack_prefix": prefix},
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.metrics.values())))
        self.register_outputs({"alerts": {k: a.name for k, a in self.alerts.items()},
                               "metrics": {k: m.name for k, m in self.metrics.items()}})
