"""The guards of `merge_staging` after its one MERGE, and how a failed MERGE job is classified, against a
focused double of the BigQuery calls it makes (the real statements are judged in tests/sql and run on
the emulator in tests/stack)."""

from __future__ import annotations

import datetime as dt

import pytest
from google.api_core import exceptions as gexc
from google.cloud.bigquery import SchemaField

from batchline.adapters import merge as c
from batchline.adapters import merge_sql, staging
from batchline.domain import ids
from batchline.domain.errors import ConsolidationError, MergeAttemptFailed
from batchline.domain.schema import MAIN_TABLE_COLUMNS
from batchline.settings import Settings

S = Settings()
BATCH = "20300115_0123456789ab"
DATE = dt.date(2030, 1, 15)
SCHEMA = [SchemaField(col.name, col.type, mode=col.mode) for col in MAIN_TABLE_COLUMNS]


STAGING_SCHEMA = staging.staging_schema(SCHEMA)
WA, WB = "a" * 32, "b" * 32
MANIFEST = {"player_a": WA, "player_b": WB}
PIN = "g0_a0_" + "0" * 12


class _Table:
    def __init__(self, schema):
        self.schema = schema


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


def _per_item(counts: dict[str, tuple]) -> list[dict]:
    return [{"item_id": i, "n": v[0], "k": v[1], **({"systems": v[2]} if len(v) > 2 else {})}
            for i, v in counts.items()]


class _BigQuery:
    """The batch staging table's manifest writes stage `staged` (item -> rows, distinct ids); the MERGE
    affects `affected`; the main table then holds `in_main` (item -> rows, distinct ids, systems)."""

    def __init__(self, staged: dict[str, tuple[int, int]], affected: int, in_main: dict[str, tuple],
                 dup: int = 0, merge_error: Exception | None = None, state: str = "DONE",
                 reason: str | None = None):
        self.tables = {S.main_table_id: SCHEMA, S.staging_table_id(ids.batch_staging_table(BATCH)): STAGING_SCHEMA}
        self.staged, self.affected, self.in_main, self.dup = staged, affected, in_main, dup
        self.merge_error, self.state, self.reason = merge_error, state, reason
        self.statements: list[str] = []
        self.params: list[dict] = []

    def get_table(self, table_id):
        if table_id not in self.tables:
            raise gexc.NotFound(table_id)
        return _Table(self.tables[table_id])

    def get_job(self, job_id):
        raise gexc.NotFound(job_id)

    def _record(self, sql, job_config):
        self.statements.append(sql)
        self.params.append({p.name: p for p in (job_config.query_parameters if job_config else [])})

    def query(self, sql, job_config=None, job_id=None, job_retry=None):
        self._record(sql, job_config)
        if sql.startswith("MERGE") or "ERROR(" in sql:
            return _Job(job_id, self.affected, self.merge_error, self.state, self.reason)
        assert "AS dup" in sql, f"unexpected query: {sql}"
        job = _Job("q", 0)
        job.rows = [{"dup": self.dup}]
        return job

    def query_and_wait(self, sql, job_config=None, **_kw):
        self._record(sql, job_config)
        if "staging_item_id AS item_id" in sql:
            return _per_item(self.staged)
        assert "ARRAY_AGG(DISTINCT system_id)" in sql, f"unexpected query: {sql}"
        return _per_item(self.in_main)


def _merge(bq: _BigQuery, pin: str = PIN, pinned_items: int = len(MANIFEST), **kw):
    return c.merge_staging(bq, S, BATCH, DATE, pin, pinned_items, **kw)


STAGED = {"player_a": (5, 5), "player_b": (5, 5)}
GOOD = {"player_a": (5, 5, ["s1", "s2"]), "player_b": (5, 5, ["s2", "s3"])}


def test_a_verified_merge_returns_its_figures():
    bq = _BigQuery(STAGED, affected=10, in_main=GOOD)
    result = _merge(bq)
    assert (result.staged_rows, result.staged_keys, result.staged_items) == (10, 10, 2)
    assert (result.affected_rows, result.verified_rows, result.verified_items, result.verified_systems) == (
        10, 10, 2, 3)
    assert result.job_id == c.merge_job_id(BATCH, 0, 0)
    assert result.pin == PIN
    assert sum(s.startswith("MERGE") for s in bq.statements) == 1


def test_the_merge_and_the_staged_counts_read_only_the_pinned_writes():
    bq = _BigQuery(STAGED, affected=10, in_main=GOOD)
    _merge(bq)
    staged_sql, merge = (next(i for i, s in enumerate(bq.statements) if cond(s)) for cond in (
        lambda s: "staging_item_id AS item_id" in s, lambda s: s.startswith("MERGE")))
    for i in (staged_sql, merge):
        assert "M.manifest_pin = @pin AND M.manifest_kind = 'merge'" in bq.statements[i]
        assert bq.params[i]["pin"].value == PIN
    assert "manifest_kind = 'scheduled'" in bq.statements[merge]


def test_a_pinned_write_not_staged_fails_before_the_merge():
    """The pin names 3 writes, the staging table holds 2 of them: nothing is merged, the table is kept."""
    bq = _BigQuery(STAGED, affected=10, in_main=GOOD)
    with pytest.raises(ConsolidationError, match="names 3 writes; the batch staging table holds 2"):
        _merge(bq, pinned_items=3)
    assert not any(s.startswith("MERGE") for s in bq.statements)


def test_a_merge_that_changed_nothing_while_staging_holds_rows_fails_and_keeps_the_tables():
    bq = _BigQuery(STAGED, affected=0, in_main=GOOD)
    with pytest.raises(ConsolidationError, match="affected 0 rows while staging holds 10"):
        _merge(bq)


@pytest.mark.parametrize("in_main, detail", [
    ({**GOOD, "player_b": (4, 4, ["s2"])}, "player_b: staged 5, main 4 rows (4 distinct ids)"),  # a row missing
    ({**GOOD, "player_b": (5, 4, ["s2"])}, "player_b: staged 5, main 5 rows (4 distinct ids)"),  # an id twice
    ({"player_a": GOOD["player_a"]}, "player_b: staged 5, main 0 rows (0 distinct ids)"),  # an item missing
    ({**GOOD, "player_c": (2, 2, ["s1"])}, "player_c: staged 0, main 2 rows (2 distinct ids)"),  # not staged
])
def test_one_item_whose_rows_in_main_differ_from_its_staged_write_fails_naming_it(in_main, detail):
    # the totals can even agree (a row moved between items): verification is per item
    bq = _BigQuery(STAGED, affected=10, in_main=in_main)
    with pytest.raises(ConsolidationError, match="verification failed for 1 items") as err:
        _merge(bq)
    assert detail in str(err.value) and "player_a" not in str(err.value)


def test_a_missing_staging_table_fails_before_any_statement():
    bq = _BigQuery(STAGED, affected=10, in_main=GOOD)
    del bq.tables[S.staging_table_id(ids.batch_staging_table(BATCH))]
    with pytest.raises(ConsolidationError, match="does not exist"):
        _merge(bq)
    assert bq.statements == []


def test_a_bad_pin_is_refused_before_any_statement():
    bq = _BigQuery(STAGED, affected=10, in_main=GOOD)
    with pytest.raises(ValueError, match="manifest pin"):
        _merge(bq, pin="x'; DROP TABLE t; --")
    assert bq.statements == []


def test_active_duplicates_after_the_merge_fail_it():
    bq = _BigQuery(STAGED, affected=10, in_main=GOOD, dup=3)
    with pytest.raises(ConsolidationError, match="3 active rows for 2030-01-15 beyond one"):
        _merge(bq)


def test_a_finished_job_with_a_passing_reason_is_a_failed_attempt():
    bq = _BigQuery(STAGED, affected=0, in_main=GOOD,
                   merge_error=gexc.InternalServerError("backend"), reason="backendError")
    with pytest.raises(MergeAttemptFailed) as err:
        _merge(bq, attempt=2)
    assert err.value.job_id == c.merge_job_id(BATCH, 0, 2)


def test_a_finished_job_with_any_other_reason_is_permanent():
    bq = _BigQuery(STAGED, affected=0, in_main=GOOD,
                   merge_error=gexc.BadRequest("Unrecognized name: edge"), reason="invalidQuery")
    with pytest.raises(ConsolidationError, match="rejected by BigQuery"):
        _merge(bq)


def test_a_job_whose_fate_is_unknown_is_waited_for_not_replaced():
    error = gexc.ServiceUnavailable("polling failed")
    bq = _BigQuery(STAGED, affected=0, in_main=GOOD, merge_error=error, state="RUNNING")
    with pytest.raises(gexc.ServiceUnavailable):
        _merge(bq)


def test_the_injected_transient_failure_runs_a_failing_statement_under_the_attempts_job_id():
    bq = _BigQuery(STAGED, affected=0, in_main=GOOD,
                   merge_error=gexc.BadRequest("injected"), reason="invalidQuery")
    with pytest.raises(MergeAttemptFailed):
        _merge(bq, fail_transiently=True)
    assert not any(s.startswith("MERGE") for s in bq.statements)


def test_merge_parameters_name_the_deactivation_scope():
    params = {p.name: p for p in merge_sql.merge_params(BATCH, DATE, PIN, DATE + dt.timedelta(1))}
    assert params["game_date"].value == DATE + dt.timedelta(1), "the source date (zero_merge fault)"
    assert params["target_date"].value == DATE, "rows are deactivated on the batch's own date"
    assert params["pin"].value == PIN, "merged and scheduled items: the pin's rows"
    assert params["batch_id"].value == BATCH and set(params) == {"batch_id", "game_date", "target_date", "pin"}
