"""The guards of `merge_staging` after its one MERGE, and how a failed MERGE job is classified, against a
focused double of the BigQuery calls it makes (the real statements are judged in tests/sql and run on
the emulator in tests/stack)."""

from __future__ import annotations

import datetime as dt

import pytest
from google.api_core import exceptions as gexc
from google.cloud.bigquery import SchemaField

from batchline import consolidate as c
from batchline import ids
from batchline.schema import MAIN_TABLE_COLUMNS
from batchline.settings import Settings

S = Settings()
BATCH = "20300115_0123456789ab"
DATE = dt.date(2030, 1, 15)
SCHEMA = [SchemaField(col.name, col.type, mode=col.mode) for col in MAIN_TABLE_COLUMNS]


class _Table:
    def __init__(self, rows: int):
        self.schema, self.num_rows = SCHEMA, rows


class _Job:
    def __init__(self, job_id: str, affected: int, error: Exception | None = None, state: str = "DONE",
                 reason: str | None = None):
        self.job_id, self.num_dml_affected_rows, self.error = job_id, affected, error
        self.state, self.error_result = state, ({"reason": reason} if reason else None)
        self.rows: list[dict] = []

    def result(self):
        if self.error is not None:
            raise self.error
        return [dict(r) for r in self.rows]

    def reload(self):
        return None


class _BigQuery:
    """Staging tables of `rows` each; the MERGE affects `affected`; verification answers `verified`."""

    def __init__(self, tables: dict[str, int], affected: int, verified: dict, dup: int = 0,
                 merge_error: Exception | None = None, state: str = "DONE", reason: str | None = None):
        self.tables = {S.main_table_id: 0} | {S.staging_table_id(t): n for t, n in tables.items()}
        self.affected, self.verified, self.dup = affected, verified, dup
        self.merge_error, self.state, self.reason = merge_error, state, reason
        self.statements: list[str] = []

    def get_table(self, table_id):
        return _Table(self.tables[table_id])

    def get_job(self, job_id):
        raise gexc.NotFound(job_id)

    def query(self, sql, job_config=None, job_id=None, job_retry=None):
        self.statements.append(sql)
        if sql.startswith("MERGE") or "ERROR(" in sql:
            return _Job(job_id, self.affected, self.merge_error, self.state, self.reason)
        job = _Job("q", 0)
        job.rows = [{"dup": self.dup}] if "AS dup" in sql else [self.verified]
        return job


def _stg(item: str) -> str:
    return ids.staging_table_name(BATCH, item)


def _merge(bq: _BigQuery, **kw):
    return c.merge_staging(bq, S, BATCH, DATE, [_stg("player_a"), _stg("player_b")], **kw)


GOOD = {"n": 10, "k": 10, "p": 2, "s": 5}


def test_a_verified_merge_returns_its_figures():
    bq = _BigQuery({_stg("player_a"): 5, _stg("player_b"): 5}, affected=10, verified=GOOD)
    result = _merge(bq)
    assert (result.staged_rows, result.staged_items, result.affected_rows, result.verified_rows) == (10, 2, 10, 10)
    assert result.job_id == c.merge_job_id(BATCH, 0, 0) and result.tables == [_stg("player_a"), _stg("player_b")]
    assert sum(s.startswith("MERGE") for s in bq.statements) == 1


def test_a_merge_that_changed_nothing_while_staging_holds_rows_fails_and_keeps_the_tables():
    bq = _BigQuery({_stg("player_a"): 5, _stg("player_b"): 5}, affected=0, verified=GOOD)
    with pytest.raises(c.ConsolidationError, match="affected 0 rows while staging holds 10"):
        _merge(bq)


@pytest.mark.parametrize("verified, what", [
    ({"n": 9, "k": 9, "p": 2, "s": 5}, "rows"),  # a row missing
    ({"n": 10, "k": 9, "p": 2, "s": 5}, "distinct ids"),  # a prediction id twice
    ({"n": 10, "k": 10, "p": 1, "s": 5}, "players"),  # a player missing
])
def test_a_main_table_that_does_not_hold_exactly_the_staged_rows_fails(verified, what):
    bq = _BigQuery({_stg("player_a"): 5, _stg("player_b"): 5}, affected=10, verified=verified)
    with pytest.raises(c.ConsolidationError, match="verification failed"):
        _merge(bq)


def test_active_duplicates_after_the_merge_fail_it():
    bq = _BigQuery({_stg("player_a"): 5, _stg("player_b"): 5}, affected=10, verified=GOOD, dup=3)
    with pytest.raises(c.ConsolidationError, match="3 active rows for 2030-01-15 beyond one"):
        _merge(bq)


def test_a_finished_job_with_a_passing_reason_is_a_failed_attempt():
    bq = _BigQuery({_stg("player_a"): 5, _stg("player_b"): 5}, affected=0, verified=GOOD,
                   merge_error=gexc.InternalServerError("backend"), reason="backendError")
    with pytest.raises(c.MergeAttemptFailed) as err:
        _merge(bq, attempt=2)
    assert err.value.job_id == c.merge_job_id(BATCH, 0, 2)


def test_a_finished_job_with_any_other_reason_is_permanent():
    bq = _BigQuery({_stg("player_a"): 5, _stg("player_b"): 5}, affected=0, verified=GOOD,
                   merge_error=gexc.BadRequest("Unrecognized name: edge"), reason="invalidQuery")
    with pytest.raises(c.ConsolidationError, match="rejected by BigQuery"):
        _merge(bq)


def test_a_job_whose_fate_is_unknown_is_waited_for_not_replaced():
    error = gexc.ServiceUnavailable("polling failed")
    bq = _BigQuery({_stg("player_a"): 5, _stg("player_b"): 5}, affected=0, verified=GOOD, merge_error=error,
                   state="RUNNING")
    with pytest.raises(gexc.ServiceUnavailable):
        _merge(bq)


def test_the_injected_transient_failure_runs_a_failing_statement_under_the_attempts_job_id():
    bq = _BigQuery({_stg("player_a"): 5, _stg("player_b"): 5}, affected=0, verified=GOOD,
                   merge_error=gexc.BadRequest("injected"), reason="invalidQuery")
    with pytest.raises(c.MergeAttemptFailed):
        _merge(bq, fail_transiently=True)
    assert not any(s.startswith("MERGE") for s in bq.statements)


def test_merge_parameters_name_the_deactivation_scope():
    params = {p.name: p for p in c.merge_params(BATCH, DATE, ["b", "a"], ["c", "a", "b"], DATE + dt.timedelta(1))}
    assert params["game_date"].value == DATE + dt.timedelta(1), "the source date (zero_merge fault)"
    assert params["target_date"].value == DATE, "rows are deactivated on the batch's own date"
    assert params["merged_items"].values == ["a", "b"] and params["scheduled_items"].values == ["a", "b", "c"]
    assert params["batch_id"].value == BATCH
