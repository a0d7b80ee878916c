"""Runbooks: what the on-call runs for each alert (the alert policies' documentation)."""

from __future__ import annotations

from typing import NamedTuple

from infra.config_types import StackConfig


class _Commands(NamedTuple):
    """The commands the runbooks quote, rendered for one stack."""

    project: str
    logs: str  # reads one event's log lines: .format(event=...)
    reconcile: str  # runs the daily reconciliation now
    cli: str  # the operator CLI's target option
    pulls: str  # pulls (without ack) every dead-letter pull subscription


def _commands(cfg: StackConfig, dlq_subscriptions: list[str]) -> _Commands:
    p, prefix = cfg.gcp.project, cfg.pubsub.topic_prefix
    logs = (f"gcloud logging read 'resource.type=\"cloud_run_revision\" AND "
            f"resource.labels.service_name:\"{prefix}-\" AND jsonPayload.event=\"{{event}}\"' "
            f"--project={p} --freshness=2h --format=json")
    reconcile = f"gcloud scheduler jobs run {prefix}-reconcile --project={p} --location={cfg.gcp.region}"
    pulls = "\n".join(f"gcloud pubsub subscriptions pull {s} --project={p} --limit=20 --format=json"
                      for s in dlq_subscriptions)
    return _Commands(p, logs, reconcile, f"--project {p}", pulls)


def runbooks(cfg: StackConfig, dlq_subscriptions: list[str]) -> dict[str, tuple[str, str]]:
    """alert key -> (subject, markdown runbook)."""
    c = _commands(cfg, dlq_subscriptions)
    return {**_write_runbooks(cfg, c), **_merge_runbooks(cfg, c), **_attention_runbooks(cfg, c)}


def _write_runbooks(cfg: StackConfig, c: _Commands) -> dict[str, tuple[str, str]]:
    """Staged writes that failed or are missing, low coverage, new dead letters."""
    p, logs, reconcile, cli, pulls = c.project, c.logs, c.reconcile, c.cli, c.pulls
    bq, t = cfg.bigquery, cfg.thresholds
    return {
        "staging-write-failure-rate": (
            f"batchline: staging write failures above {t.staging_write_failure_rate_pct}%",
            "Workers are failing to append to their batch staging table (F1). Failed items are retried by Pub/Sub and "
            "dead-lettered after the maximum attempts, nothing is acknowledged without a durable write.\n\n"
            f"1. See the errors: `{logs.format(event='staging_write_failed')}`\n"
            f"2. Check the staging dataset exists and quotas: `bq show --project_id={p} {bq.staging_dataset}`\n"
            "3. If the cause is load (Storage Write API throughput or connection quotas), apply the emergency profile: "
            "`pulumi config set batchline:emergency true && pulumi up`.\n"
            f"4. After the fix, run the items dead-lettered meanwhile again: `batchline dlq replay --batch "
            f"<BATCH_ID> {cli} --wait`"),
        "staging-gap": (
            "batchline: items with nothing staged at consolidation",
            "The coordinator consolidated a batch in which some expected items had no staged write; the gap was "
            "recorded with the missing item ids (F4/F9).\n\n"
            f"1. Which items: `{logs.format(event='staging_gap')}` (fields missing_staged_items / missing_items)\n"
            f"2. Repair them as a batch of just those items: `batchline reconcile <DATE> --repair {cli} --wait` "
            f"(up to 25 items; a larger gap: run the date again, `batchline start <DATE> {cli} --wait`)\n"
            f"3. Confirm with the daily reconciliation: `{reconcile}`"),
        "coverage-warning": (
            f"batchline: coverage below {t.coverage_warning_pct}%",
            "A consolidation produced fewer predictions than expected.\n\n"
            f"1. Details: `{logs.format(event='consolidation_succeeded')}` (coverage_pct, batch_id)\n"
            f"2. Repair the missing items: `batchline reconcile <DATE> --repair {cli} --wait`\n"
            f"3. Reconcile: `{reconcile}`"),
        "coverage-critical": (
            f"batchline: coverage below {t.coverage_critical_pct}% (critical)",
            "A consolidation covered far fewer players than scheduled. Treat as an outage.\n\n"
            f"1. Details: `{logs.format(event='consolidation_succeeded')}`\n"
            f"2. Look for failing writes: `{logs.format(event='staging_write_failed')}`\n"
            f"3. Dead letters: \n```\n{pulls}\n```\n4. After the fix: `batchline dlq replay --batch <BATCH_ID> "
            f"{cli} --wait`, then `{reconcile}`"),
        "dead-letter-messages": (
            "batchline: new messages dead-lettered",
            "A source subscription just forwarded messages to its dead-letter topic (they exhausted their "
            "delivery attempts). The alert counts new dead letters, so it closes by itself and pages again for "
            "the next one; the messages are kept in the dead-letter pull subscriptions (do not ack them before "
            "the cause is known).\n\n"
            f"1. Inspect (without ack):\n```\n{pulls}\n```\n"
            f"2. Why: `{logs.format(event='item_dead_lettered')}`\n"
            f"3. List them: `batchline dlq list --batch <BATCH_ID> {cli}`\n"
            f"4. After the fix, run them again as a repair batch: `batchline dlq replay --batch <BATCH_ID> {cli} "
            "--wait`. While the batch's consolidation has failed the replay is refused (the repair would become "
            "the date's newest run and strand the batch's kept rows): consolidate it first "
            f"(`batchline consolidate <BATCH_ID> {cli} --wait`), then replay"),
    }


def _merge_runbooks(cfg: StackConfig, c: _Commands) -> dict[str, tuple[str, str]]:
    """The main table's DML, a failed consolidation, a gap the reconciliation found."""
    p, logs, reconcile = c.project, c.logs, c.reconcile
    bq, t = cfg.bigquery, cfg.thresholds
    return {
        "dml-rate-limited": (
            f"batchline: BigQuery DML rate limit ({t.dml_rate_limit_errors} in {t.dml_rate_limit_window_s}s)",
            "BigQuery answered 'Too many DML statements outstanding'. Only the coordinator's one MERGE per "
            "batch should run DML on the main table (F2); something else is mutating it.\n\n"
            f"1. Who: `{logs.format(event='dml_rate_limited')}`\n"
            f"2. Running jobs: `bq ls --jobs=true --all=true --max_results=50 --project_id={p}`\n"
            "3. Reduce load: `pulumi config set batchline:emergency true && pulumi up`"),
        "consolidation-failed": (
            "batchline: consolidation failed",
            "The consolidation MERGE failed; the batch staging table is kept (F6), nothing is lost.\n\n"
            f"1. Error: `{logs.format(event='consolidation_failed')}` (schema drift is reported with column "
            "names, F5)\n"
            f"2. The kept table: `bq show {p}:{bq.staging_dataset}.stg_<BATCH_ID>`\n"
            "3. After the fix, consolidate again (a new MERGE generation over the kept table), through the "
            f"control topic: `batchline consolidate <BATCH_ID> --project {p} --wait` (refused if a newer run "
            "of the date exists: then start the date again)"),
        "reconciliation-gap": (
            "batchline: daily reconciliation found a gap",
            "The schedule (context table) and the main table disagree for a date, or staged rows outlived "
            "their batch. Small gaps were re-dispatched as a new batch automatically (`action` in the log).\n\n"
            f"1. What: `{logs.format(event='reconciliation_gap')}` (incomplete_items, "
            "orphaned_staging_tables: `<table>/<item>` entries still kept)\n"
            f"2. Leftover batch staging tables hold rows not in the main table: `bq ls --max_results=1000 "
            f"{p}:{bq.staging_dataset}`\n"
            f"3. Re-run the check after a fix: `{reconcile}`"),
    }


def _attention_runbooks(cfg: StackConfig, c: _Commands) -> dict[str, tuple[str, str]]:
    """Events a human reads: late or short completions, refused starts, stale inputs."""
    logs, reconcile, cli = c.logs, c.reconcile, c.cli
    bq = cfg.bigquery
    return {
        "needs-attention": (
            "batchline: an event needs a human",
            "A completion arrived after its batch was consolidated (its write was not merged; the batch "
            "reported the item failed or missing), a dispatch "
            "failed, a dead-lettered message could not be attributed to an item (kept in Firestore "
            "`rejected_messages`), schedule rows were invalid, a scheduled call was refused "
            "(`scheduled_call_refused`: e.g. the daily start found the date's batch still active or no "
            "context rows; answered 2xx so Cloud Scheduler does not retry it, and nothing ran), or a write "
            "was short of the item's predictions (`completion_incomplete`: the item failed with what it "
            "lacks; a predictor or writer bug).\n\n"
            f"1. Which: `{logs.format(event='late_completion')}` (likewise dispatch_failed, message_rejected, "
            "context_rows_rejected, scheduled_call_refused (its `refused_status` and `error` say why), "
            "completion_incomplete)\n"
            f"2. Late rows are picked up by the daily reconciliation: `{reconcile}`\n"
            f"3. After fixing a short write's cause: `batchline redispatch <BATCH_ID> <ITEM>... {cli} --wait`"),
        "stale-inputs": (
            "batchline: start refused, context rows stale",
            "A start found the date's context rows loaded longer ago than "
            "BATCHLINE_CONTEXT_MAX_AGE_HOURS (or without `loaded_at`) and ran nothing (/start answers 424; "
            "Cloud Scheduler's daily start gets 2xx with `refused_status` 424, so its retries cannot start on "
            "half-loaded rows; a start through the control topic is answered `refused` with the load time): "
            "the upstream load is late or failed.\n\n"
            f"1. Which date, newest load time, allowed age: `{logs.format(event='start_refused_stale_inputs')}`\n"
            f"2. Check the upstream load of `{bq.main_dataset}.{bq.context_table}` for that date (`loaded_at`).\n"
            f"3. After it reloads, start again: `batchline start <DATE> {cli} --wait`\n"
            f"4. Only if the rows are known good: `batchline start <DATE> --accept-stale-inputs {cli} --wait`"),
    }
