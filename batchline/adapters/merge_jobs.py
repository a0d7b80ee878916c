"""What BigQuery's job records say about MERGEs: the state of one attempt's job (by its deterministic
id, so a redelivery finds a MERGE that already ran) and the mutating DML on the main table since a
time (so the ledger counts MERGEs from BigQuery, not from the pipeline's own claims)."""

from __future__ import annotations

import datetime as dt
import re

from google.api_core import exceptions as gexc
from google.cloud import bigquery

from batchline.domain import accounting
from batchline.settings import Settings

MISSING = "missing"  # pinned, but its job was never submitted (the delivery died in between)
RUNNING = "running"
FAILED = "failed"  # finished with an error: nothing changed
SUCCEEDED = "succeeded"  # finished without an error: its rows are in the main table

_DML_TARGET = re.compile(r"^\s*(?:MERGE|INSERT|UPDATE|DELETE)\s+(?:INTO\s+|FROM\s+)?`?([A-Za-z0-9_.\-]+)`?",
                         re.IGNORECASE)
MUTATING = {"INSERT", "UPDATE", "DELETE", "MERGE"}


def job_state(bq: bigquery.Client, job_id: str) -> str:
    try:
        job = bq.get_job(job_id)
    except gexc.NotFound:
        return MISSING
    if getattr(job, "state", None) != "DONE":
        return RUNNING
    return FAILED if getattr(job, "error_result", None) else SUCCEEDED


def main_table_merges(bq: bigquery.Client, s: Settings, since: dt.datetime,
                      batch_id: str | None = None) -> tuple[list[str], int]:
    """(the successful MERGE jobs of `batch_id` on the main table, by job id, so concurrent batches
    do not add up; all successful mutating DML on the main table), created since `since`."""
    targets = (s.main_table_id, f"{s.main_dataset}.{s.main_table}")
    prefix = accounting.merge_job_prefix(batch_id) if batch_id else None
    mine: list[str] = []
    window = 0
    for job in bq.list_jobs(min_creation_time=since, all_users=True, max_results=50_000):
        if job.job_type != "query" or (job.created and job.created < since) or getattr(job, "error_result", None):
            continue
        if (getattr(job, "statement_type", None) or "").upper() not in MUTATING:
            continue
        m = _DML_TARGET.match(job.query or "")
        if not m or m.group(1).replace("`", "") not in targets:
            continue
        window += 1
        if prefix and job.job_id.startswith(prefix):
            mine.append(job.job_id)
    return sorted(mine), window
