"""The loss ledger: what a batch was supposed to produce versus what landed, counted from the
systems of record, never from the pipeline's own claims.

expected        distinct players in the context table for the date (the schedule)
merged          distinct players in the main table carrying this batch id (BigQuery)
dead-lettered   distinct items of this batch sitting in the work dead-letter subscription (Pub/Sub)
missing         expected - merged - dead-lettered: the number that must be zero
duplicates      rows beyond one per prediction id for the date (BigQuery)
staging left    staging (and scratch) tables of this batch still present, asked by name (BigQuery)
mutating DML    DML jobs whose target is the main table since the batch began (BigQuery job list)
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass, field

from google.cloud import bigquery, pubsub_v1

from batchline import ids
from batchline.clients import Clients
from batchline.consolidate import existing_scratch_tables, existing_staging_tables, query_one
from batchline.messages import InvalidMessage, WorkMessage, parse_model

_DML_TARGET = re.compile(r"^\s*(?:MERGE|INSERT|UPDATE|DELETE)\s+(?:INTO\s+|FROM\s+)?`?([A-Za-z0-9_.\-]+)`?",
                         re.IGNORECASE)
MUTATING = {"INSERT", "UPDATE", "DELETE", "MERGE"}


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
    dead_lettered_ids: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)


def dead_lettered_items(clients: Clients, batch_id: str, max_messages: int = 10_000) -> set[str]:
    """Items of `batch_id` in the work dead-letter pull subscription. Messages are pulled, read and
    then released (ack deadline 0), so they stay there for inspection and replay."""
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


def main_table_dml_since(clients: Clients, since: dt.datetime) -> int:
    s = clients.settings
    main = s.main_table_id
    n = 0
    for job in clients.bq.list_jobs(min_creation_time=since, all_users=True, max_results=50_000):
        if job.job_type != "query" or (job.created and job.created < since):
            continue
        if (getattr(job, "statement_type", None) or "").upper() not in MUTATING:
            continue
        m = _DML_TARGET.match(job.query or "")
        if m and m.group(1).replace("`", "") in (main, f"{s.main_dataset}.{s.main_table}"):
            n += 1
    return n


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
    merged = {r["player_lookup"] for r in clients.bq.query(
        f"SELECT DISTINCT player_lookup FROM `{s.main_table_id}` WHERE game_date = @d AND batch_id = @b",
        job_config=bigquery.QueryJobConfig(query_parameters=[d, b])).result()}
    rows = query_one(clients.bq, f"SELECT COUNT(*) AS n, COUNT(DISTINCT prediction_id) AS k, "
                                  f"COUNTIF(batch_id = @b) AS mine FROM `{s.main_table_id}` WHERE game_date = @d",
                      [d, b])
    dead = dead_lettered_items(clients, batch_id)
    items = BatchStore(clients.fs).items(batch_id)
    staging_left = (len(existing_staging_tables(clients.bq, s, batch_id, [i["item_id"] for i in items]))
                    + len(existing_scratch_tables(clients.bq, s, batch_id, len(items))))
    dml = main_table_dml_since(clients, batch["created_at"])
    # The expected set is the schedule: a gap batch (re-dispatch of a few items) expects only those.
    if batch.get("only_items"):
        expected &= set(batch["only_items"])
    missing = sorted(expected - merged - dead)
    ledger = Ledger(
        batch_id=batch_id, game_date=game_date.isoformat(), batch_status=batch["status"],
        expected_items=len(expected), merged_items=len(merged & expected), dead_lettered_items=len(dead & expected),
        missing_items=missing, duplicate_rows=int(rows["n"] - rows["k"]), staging_tables_left=staging_left,
        main_table_mutating_dml=dml, merged_rows=int(rows["mine"]), elapsed_s=round(elapsed_s, 2),
        dead_lettered_ids=sorted(dead),
    )
    if batch["status"] != CONSOLIDATED:
        ledger.problems.append(f"batch ended {batch['status']}: {batch.get('error', '')}".strip())
    if missing:
        ledger.problems.append(f"{len(missing)} expected items neither merged nor dead-lettered")
    if ledger.duplicate_rows:
        ledger.problems.append(f"{ledger.duplicate_rows} duplicate rows in the main table")
    if batch["status"] == CONSOLIDATED and staging_left:
        ledger.problems.append(f"{staging_left} staging tables left after consolidation")
    return ledger
