"""Which MERGE failures are retried, and that a redelivered consolidation never starts a second MERGE."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from batchline.adapters import merge as c


@pytest.mark.parametrize("text", [
    "Too many DML statements outstanding against table p.d.t, limit is 20",
    "Could not serialize access to table p.d.t due to concurrent update",
    "Resources exceeded during query execution",
])
def test_passing_conditions_that_bigquery_reports_as_400_are_transient(text):
    assert c.is_transient(gexc.BadRequest(text))


@pytest.mark.parametrize("text", ["Unrecognized name: edge_score", "Syntax error: Expected end of input",
                                  "Query column 3 has type STRING which cannot be inserted into column confidence"])
def test_invalid_statements_are_permanent(text):
    assert not c.is_transient(gexc.BadRequest(text))


class _Jobs:
    """A focused double of the two job calls run_merge_once makes."""

    def __init__(self, existing: set[str] = frozenset(), conflict_on_insert: bool = False):
        self.jobs = {j: f"job:{j}" for j in existing}
        self.queries: list[str] = []
        self.conflict_on_insert = conflict_on_insert

    def get_job(self, job_id):
        if job_id not in self.jobs:
            raise gexc.NotFound(job_id)
        return self.jobs[job_id]

    def query(self, sql, job_config=None, job_id=None, job_retry="default"):
        assert job_retry is None, "a fixed job id must not be retried under a new id"
        if self.conflict_on_insert:
            self.jobs[job_id] = f"job:{job_id}"  # another invocation won the race
            raise gexc.Conflict(job_id)
        self.queries.append(sql)
        self.jobs[job_id] = f"job:{job_id}"
        return self.jobs[job_id]


def test_first_delivery_runs_the_merge_under_the_generation_job_id():
    bq = _Jobs()
    job_id = c.merge_job_id("20300101_abcdefabcdef", 0)
    assert c.run_merge_once(bq, "MERGE ...", None, job_id) == f"job:{job_id}"
    assert bq.queries == ["MERGE ..."]


def test_a_redelivery_waits_for_the_existing_job_and_runs_nothing():
    job_id = c.merge_job_id("20300101_abcdefabcdef", 0)
    bq = _Jobs(existing={job_id})
    assert c.run_merge_once(bq, "MERGE ...", None, job_id) == f"job:{job_id}"
    assert bq.queries == []


def test_losing_the_insert_race_adopts_the_winner_job():
    job_id = c.merge_job_id("20300101_abcdefabcdef", 1)
    bq = _Jobs(conflict_on_insert=True)
    assert c.run_merge_once(bq, "MERGE ...", None, job_id) == f"job:{job_id}" and bq.queries == []


def test_generations_get_distinct_job_ids_and_ids_are_validated():
    assert c.merge_job_id("20300101_abcdefabcdef", 0) != c.merge_job_id("20300101_abcdefabcdef", 1)
    with pytest.raises(ValueError):
        c.merge_job_id("x`; drop", 0)
