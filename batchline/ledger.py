"""The loss ledger: what a batch was supposed to produce versus what landed, counted from the
systems of record, never from the pipeline's own claims.

Every expected item falls in exactly one of three parts (asserted in `compute`):

expected        distinct players in the context table for the date (the schedule)
merged          expected items with rows in the main table carrying this batch id (BigQuery),
                recovered ones included
  recovered     the subset of merged that was dead-lettered first (its staged write was merged anyway)
dead-lettered   expected items whose work message was dead-lettered and that are NOT merged
missing         expected - merged - dead-lettered: the number that must be zero

Dead letters are counted from the durable record the dead-letter handler writes in Firestore
(`batchline.dead_letters`), which concurrent readers cannot disturb; the work dead-letter pull
subscription is consulted only for items that would otherwise be missing.

duplicates      rows beyond one per prediction id for the date (BigQuery)
staging left    staging (and scratch) tables of this batch still present, asked by name (BigQuery)
mutating DML    successful DML jobs on the main table whose job id is this batch's MERGE
                (`batchline_merge_<batch_id>_...`); `main_table_mutating_dml_window` counts all of them,
                any batch's, since this batch began (BigQuery job list)
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass, field

from google.cloud import bigquery, pubsub_v1

from batchline import ids, staging
from batchline.clients import Clients
from batchline.consolidate import (
    active_duplicates_sql,
    batch_params,
    query_one,
)
from batchline.dead_letters import DeadLetterLog, dead_lettered_in_item_state
from batchline.messages import InvalidMessage, WorkMessage, parse_model

_DML_TARGET = re.compile(r"^\s*(?:MERGE|INSERT|UPDATE|DELETE)\s+(?:INTO\s+|FROM\s+)?`?([A-Za-z0-9_.\-]+)`?",
                         re.IGNORECASE)
MUTATING = {"INSERT", "UPDATE", "DELETE", "MERGE"}


def replay_command(batch_id: str) -> str:
    return f"batchline dlq replay --batch {batch_id}"


@dataclass
class Ledger:
    batch_id: str
    game_date: str
    batch_status: str
    expected_items: int
    merged_items: int
    dead_lettered_items: int
    missing_items: list[str]
    duplicate_rows: int
    staging_tables_left: int
    main_table_mutating_dml: int
    merged_rows: int
    elapsed_s: float
    recovered_items: int = 0
    recovered_ids: list[str] = field(default_factory=list)
    dead_lettered_ids: list[str] = field(default_factory=list)
    # scheduled items this run did not merge whose rows from an earlier run of the date stay active
    kept_previous_ids: list[str] = field(default_factory=list)
    main_table_mutating_dml_window: int = 0
    coverage_pct: float = 0.0
    coverage_warning_pct: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost silently and nothing duplicated: every item is merged or dead-lettered."""
        return not self.problems

    @property
    def complete(self) -> bool:
        return self.ok and self.dead_lettered_items == 0

    @property
    def verdict(self) -> str:
        if not self.ok:
            return "NOT OK: " + "; ".join(self.problems)
        low = (f"; coverage {self.coverage_pct:.1f}% below the {self.coverage_warning_pct:g}% warning level"
               if self.coverage_pct < self.coverage_warning_pct else "")
        if self.complete:
            return "OK: complete" + low
        return (f"ACCOUNTED FOR but INCOMPLETE: {self.dead_lettered_items} dead-lettered "
                f"(replay with: {replay_command(self.batch_id)})" + low)

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "complete": self.complete, "verdict": self.verdict}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)


def dead_lettered_items(clients: Clients, batch_id: str) -> set[str]:
    """Items of `batch_id` with a durable dead-letter record: the handler's own record, or the item
    document it marked failed. Plain reads, so any number of ledgers may count at once."""
    from batchline.state import BatchStore

    return (DeadLetterLog(clients.fs).items(batch_id)
            | dead_lettered_in_item_state(BatchStore(clients.fs).items(batch_id)))


def dead_letters_in_subscription(clients: Clients, batch_id: str, max_messages: int = 10_000) -> set[str]:
    """Items of `batch_id` in the work dead-letter pull subscription (pulled, then released with ack
    deadline 0). A pull leases what it returns, so a concurrent reader may see fewer: this is only a
    second look for items the durable record does not account for (e.g. a dead letter whose push to
    the coordinator is still being retried)."""
    sub = pubsub_v1.SubscriberClient()
    path = sub.subscription_path(clients.settings.project,
                                 clients.topology.topic("work").dead_letter_pull_subscription)
    found: set[str] = set()
    ack_ids: list[str] = []
    try:
        while len(ack_ids) < max_messages:
            resp = sub.pull(subscription=path, max_messages=500, timeout=10)
            if not resp.received_messages:
                break
            for rm in resp.received_messages:
                ack_ids.append(rm.ack_id)
                try:
                    msg = parse_model(WorkMessage, json.loads(rm.message.data))
                except (InvalidMessage, ValueError):
                    continue
                if msg.batch_id == batch_id:
                    found.add(msg.item_id)
        for i in range(0, len(ack_ids), 500):
            sub.modify_ack_deadline(subscription=path, ack_ids=ack_ids[i:i + 500], ack_deadline_seconds=0)
    finally:
        sub.close()
    return found


def merge_job_prefix(batch_id: str) -> str:
    """Every MERGE of a batch on the main table has a job id starting with this (consolidate.merge_job_id)."""
    return f"batchline_merge_{ids.validate_batch_id(batch_id)}_"


def main_table_dml(clients: Clients, since: dt.datetime, batch_id: str | None = None) -> int:
    """Successful mutating DML jobs whose target is the main table, created since `since`; with
    `batch_id`, only that batch's MERGE jobs (by job id, so concurrent batches do not add up)."""
    s = clients.settings
    main = s.main_table_id
    prefix = merge_job_prefix(batch_id) if batch_id else ""
    n = 0
    for job in clients.bq.list_jobs(min_creation_time=since, all_users=True, max_results=50_000):
        if job.job_type != "query" or (job.created and job.created < since):
            continue
        if not job.job_id.startswith(prefix) or getattr(job, "error_result", None):
            continue
        if (getattr(job, "statement_type", None) or "").upper() not in MUTATING:
            continue
        m = _DML_TARGET.match(job.query or "")
        if m and m.group(1).replace("`", "") in (main, f"{s.main_dataset}.{s.main_table}"):
            n += 1
    return n


def main_table_dml_since(clients: Clients, since: dt.datetime) -> int:
    """All successful mutating DML on the main table since `since`, whichever batch ran it."""
    return main_table_dml(clients, since)


def compute(clients: Clients, batch_id: str, elapsed_s: float) -> Ledger:
    from batchline.state import CONSOLIDATED, BatchStore

    s = clients.settings
    batch = BatchStore(clients.fs).get_batch(ids.validate_batch_id(batch_id))
    if batch is None:
        raise LookupError(f"no batch {batch_id}")
    game_date = dt.date.fromisoformat(batch["game_date"])
    d = bigquery.ScalarQueryParameter("d", "DATE", game_date)
    b = bigquery.ScalarQueryParameter("b", "STRING", batch_id)
    expected = {r["player_lookup"] for r in clients.bq.query(
        f"SELECT DISTINCT player_lookup FROM `{s.context_table_id}` WHERE game_date = @d",
        job_config=bigquery.QueryJobConfig(query_parameters=[d])).result()}
    # The expected set is the schedule: a gap batch (re-dispatch of a few items) expects only those.
    if batch.get("only_items"):
        expected &= set(batch["only_items"])
    merged = expected & {r["player_lookup"] for r in clients.bq.query(
        f"SELECT DISTINCT player_lookup FROM `{s.main_table_id}` WHERE game_date = @d AND batch_id = @b",
        job_config=bigquery.QueryJobConfig(query_parameters=[d, b])).result()}
    rows = query_one(clients.bq, f"SELECT COUNT(*) AS n, COUNT(DISTINCT prediction_id) AS k, "
                                  f"COUNTIF(batch_id = @b) AS mine FROM `{s.main_table_id}` WHERE game_date = @d",
                      [d, b])
    # What a consumer would double count: active rows beyond one per (player, system, prop).
    active_dups = int(query_one(clients.bq, active_duplicates_sql(f"`{s.main_table_id}`"),
                                batch_params(batch_id, game_date))["dup"])
    dead = dead_lettered_items(clients, batch_id) & expected
    if expected - merged - dead:
        dead |= dead_letters_in_subscription(clients, batch_id) & expected
    recovered = merged & dead
    dead_only = dead - merged
    missing = sorted(expected - merged - dead_only)
    if len(merged) + len(dead_only) + len(missing) != len(expected):
        raise AssertionError(f"ledger partition does not add up: {len(merged)} + {len(dead_only)} + "
                             f"{len(missing)} != {len(expected)}")
    staging_left = int(staging.batch_table_exists(clients.bq, s, batch_id))
    dml = main_table_dml(clients, batch["created_at"], batch_id)
    ledger = Ledger(
        batch_id=batch_id, game_date=game_date.isoformat(), batch_status=batch["status"],
        expected_items=len(expected), merged_items=len(merged), dead_lettered_items=len(dead_only),
        missing_items=missing, duplicate_rows=int(rows["n"] - rows["k"]) + active_dups,
        staging_tables_left=staging_left, kept_previous_ids=sorted(batch.get("kept_previous_items") or {}),
        main_table_mutating_dml=dml, merged_rows=int(rows["mine"]), elapsed_s=round(elapsed_s, 2),
        recovered_items=len(recovered), recovered_ids=sorted(recovered), dead_lettered_ids=sorted(dead_only),
        main_table_mutating_dml_window=main_table_dml(clients, batch["created_at"]),
        coverage_pct=round(100.0 * len(merged) / len(expected), 2) if expected else 100.0,
        coverage_warning_pct=s.coverage_warning_pct,
    )
    if batch["status"] != CONSOLIDATED:
        ledger.problems.append(f"batch ended {batch['status']}: {batch.get('error', '')}".strip())
    if missing:
        ledger.problems.append(f"{len(missing)} expected items neither merged nor dead-lettered")
    if ledger.duplicate_rows:
        ledger.problems.append(f"{ledger.duplicate_rows} duplicate rows in the main table")
    if batch["status"] == CONSOLIDATED and staging_left:
        ledger.problems.append("the batch staging table is left after consolidation")
    generations = int(batch.get("consolidation_generation") or 0) + 1
    if batch["status"] == CONSOLIDATED and merged and not 1 <= dml <= generations:
        ledger.problems.append(f"{dml} MERGE jobs of this batch on the main table for {generations} "
                               f"consolidation(s); expected one each")
    return ledger
