"""How the cost model reads batchline's own statements (bench/cost_sql.py, cost_usage.py) and scales
counted runs (cost_scale.py): which tables and columns a statement is billed for, whether it prunes,
and the pure helpers of the counting shim."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from google.cloud import bigquery

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import cost_report  # noqa: E402
import cost_scale  # noqa: E402
import cost_sql  # noqa: E402
import cost_usage  # noqa: E402
from cost_counting import doc_template  # noqa: E402

from batchline.adapters import (
    merge_sql,
    staging,  # noqa: E402
)
from batchline.domain.schema import MAIN_TABLE_COLUMNS  # noqa: E402
from batchline.settings import Settings  # noqa: E402

S = Settings()
BATCH = "20261206_0123456789ab"
MAIN_COLS = [c.name for c in MAIN_TABLE_COLUMNS]
SCHEMA = [bigquery.SchemaField(c.name, c.type, mode=c.mode) for c in MAIN_TABLE_COLUMNS]


def merge_statement() -> str:
    exprs = [f"`{c}`" for c in MAIN_COLS]
    return merge_sql.merge_sql(S, SCHEMA, merge_sql.source_sql(S, BATCH, exprs), set(MAIN_COLS))


def tables(history_days: int = 9, items: int = 100) -> cost_usage.Tables:
    col_bytes = {"main": dict.fromkeys(MAIN_COLS, 10.0),
                 "staging": {**dict.fromkeys(MAIN_COLS, 10.0), "staging_item_id": 10.0, "staging_write_id": 34.0},
                 "context": {"game_date": 8.0, "player_lookup": 10.0, "game_id": 10.0, "loaded_at": 8.0}}
    base = cost_usage.Tables(S.main_table_id, S.context_table_id, S.staging_dataset, col_bytes, {}, {})
    return cost_scale.tables_at(base, items, 5.0, history_days)


@pytest.mark.parametrize(("method", "path", "kind"), [
    ("POST", "/bigquery/v2/projects/p/queries", "jobs.query"),
    ("GET", "/bigquery/v2/projects/p/queries/job_1?location=US", "jobs.getQueryResults"),
    ("POST", "/bigquery/v2/projects/p/jobs", "jobs.insert"),
    ("GET", "/bigquery/v2/projects/p/jobs/job_1", "jobs.get"),
    ("POST", "/upload/bigquery/v2/projects/p/jobs?uploadType=multipart", "jobs.insert(upload)"),
    ("GET", "/bigquery/v2/projects/p/datasets/d/tables/t", "tables.get"),
    ("DELETE", "/bigquery/v2/projects/p/datasets/d/tables/t", "tables.delete"),
    ("POST", "/bigquery/v2/projects/p/datasets/d/tables", "tables.insert"),
    ("GET", "/bigquery/v2/projects/p/datasets/d/tables", "tables.list"),
])
def test_rest_kind(method, path, kind):
    assert cost_sql.rest_kind(method, path) == kind


def test_statement_kinds():
    assert cost_sql.statement_kind(merge_statement()) == "MERGE"
    assert cost_sql.statement_kind("-- note\nSELECT 1") == "SELECT"
    assert cost_sql.statement_kind("WITH a AS (SELECT 1) SELECT * FROM a") == "SELECT"
    assert cost_sql.statement_kind("CREATE OR REPLACE TABLE `p.d.t` AS\nSELECT 1") == "CREATE_TABLE_AS_SELECT"
    assert cost_sql.statement_kind("DROP TABLE `p.d.t`") == "DROP_TABLE"
    assert cost_sql.is_mutating_dml("MERGE") and not cost_sql.is_mutating_dml("INSERT")


def test_the_merge_reads_the_staging_table_and_matches_on_four_target_columns():
    sql = merge_statement()
    assert cost_sql.tables_referenced(sql) == [S.main_table_id, S.staging_table_id(f"stg_{BATCH}"),
                                               S.manifest_table_id]
    assert set(cost_sql.merge_target_columns_read(sql, MAIN_COLS)) == {
        "prediction_id", "game_date", "is_active", "player_lookup"}


def _unpruned(sql: str) -> str:
    """The MERGE as it was before issue 18.5: its ON clause without the date."""
    head, tail = sql.split("\nWHEN", 1)
    return re.sub(r"\s+AND T\.`?game_date`? = @target_date", "", head) + "\nWHEN" + tail


def test_the_merge_prunes_by_its_on_filter_and_would_not_without_it():
    sql = merge_statement()
    assert cost_sql.merge_prunes_target(sql)
    assert _unpruned(sql) != sql
    assert not cost_sql.merge_prunes_target(_unpruned(sql))


def test_selects_prune_when_they_filter_the_date():
    main = f"`{S.main_table_id}`"
    assert cost_sql.select_prunes(merge_sql.verify_sql(main), S.main_table_id)
    assert not cost_sql.select_prunes(f"SELECT COUNT(*) FROM {main}", S.main_table_id)
    assert not cost_sql.select_prunes(staging.writes_sql(S, BATCH), S.main_table_id)  # not even referenced


def test_the_bulk_verification_is_billed_the_minimum_and_reads_the_ids_and_the_shape_columns():
    sql = staging.writes_sql(S, BATCH)  # the inventory's GROUP BY, also the claims' one check per batch
    cols = ["staging_item_id", "staging_write_id", "prediction_id", "system_id", "prop_type", "confidence"]
    assert cost_sql.columns_read(sql, cols) == cols[:5]  # the writes' shape (issue 17.2), never the values
    cost = cost_usage.statement_cost(sql, tables(), staging_fill=0.5)
    assert cost.per_table["staging"] > 0
    assert cost.billed == 10 * 2**20


def test_an_unpruned_merge_reads_every_date_of_the_main_table_and_ours_one():
    small, big = tables(history_days=0, items=100_000), tables(history_days=99, items=100_000)
    unpruned = _unpruned(merge_statement())
    b_small = cost_usage.statement_cost(unpruned, small).per_table["main"]
    b_big = cost_usage.statement_cost(unpruned, big).per_table["main"]
    assert b_small == pytest.approx(40.0 * 500_000)  # 4 matched columns x 10 bytes x the date's rows
    assert b_big == pytest.approx(100 * b_small)
    ours = cost_usage.statement_cost(merge_statement(), big).per_table["main"]
    assert ours == pytest.approx(b_small)  # pruned: the date's partition, whatever the history


def test_staging_fills_follow_the_appends():
    events = [{"e": "a", "t": 1, "rows": 5}, {"e": "q", "t0": 2, "h": "x"}, {"e": "a", "t": 3, "rows": 5},
              {"e": "q", "t0": 4, "h": "x"}]
    assert cost_usage.staging_fills(events, 10) == {"x": [0.5, 1.0]}


def test_peak_document_writes_in_one_second():
    hot = cost_usage.peak_doc_writes({"p/documents/a": [0.0, 0.2, 0.4, 2.0], "p/documents/b": [0.0, 5.0]})
    assert hot[0] == {"doc": "a", "writes": 4, "peak_in_1s": 3, "span_s": 2.0, "mean_per_s": 2.0}


def test_linear_fit_and_one_size_scaling():
    assert cost_scale.linear_fit([(50, 60), (450, 460)]) == pytest.approx((10, 1))
    assert cost_scale.linear_fit([(450, 2)]) == (2, 0)  # small against the size: fixed per batch
    assert cost_scale.linear_fit([(450, 900)]) == (0, 2)  # else proportional


def test_firings_per_day_of_the_schedules():
    assert cost_report.firings_per_day("* 10-23 * * *") == 840
    assert cost_report.firings_per_day("30 4 * * *") == 1
    assert cost_report.firings_per_day("*/15 * * * *") == 96
    with pytest.raises(ValueError):
        cost_report.firings_per_day("0 4 * * 1")


def test_shim_helpers():
    assert doc_template("projects/p/databases/(default)/documents/batches/B/items/I") == "batches/*/items/*"
    assert cost_usage.nest({"a|b|n": 1, "a|b|m": 2, "c|d": 3}) == {"a": {"b": {"n": 1, "m": 2}}, "c": {"d": 3}}
    assert cost_sql.shape(staging.writes_sql(S, BATCH)).count("stg_<batch>") == 1


def test_shapes_of_two_batches_compare_equal():
    other = "20261207_ba9876543210"
    assert cost_sql.shape(staging.writes_sql(S, BATCH)) == cost_sql.shape(staging.writes_sql(S, other))
