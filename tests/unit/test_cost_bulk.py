"""The cost model of issue 15's design (bench/): the manifest table as a table of its own, Storage Write
API rows told apart by destination, and BigQuery queries counted per route, so that the model prices a
completion by the queries it really waits for (none now; one COUNT each before)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from google.cloud import bigquery

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import cost_designs  # noqa: E402
import cost_scale  # noqa: E402
import cost_sql  # noqa: E402
import cost_usage  # noqa: E402
from cost_grpc import destination_kind  # noqa: E402

from batchline.adapters import (
    manifests,  # noqa: E402
    merge_sql,
)
from batchline.domain.schema import MAIN_TABLE_COLUMNS, MANIFEST_TABLE, MANIFEST_TABLE_COLUMNS  # noqa: E402
from batchline.settings import Settings  # noqa: E402

S = Settings()
BATCH = "20261206_0123456789ab"
MAIN_COLS = [c.name for c in MAIN_TABLE_COLUMNS]
SCHEMA = [bigquery.SchemaField(c.name, c.type, mode=c.mode) for c in MAIN_TABLE_COLUMNS]


def tables(items: int, scan: str = "pin", history_days: int = 99) -> cost_usage.Tables:
    col_bytes = {"main": dict.fromkeys(MAIN_COLS, 10.0),
                 "staging": {**dict.fromkeys(MAIN_COLS, 10.0), "staging_item_id": 10.0, "staging_write_id": 34.0},
                 "context": {"game_date": 8.0, "player_lookup": 10.0, "game_id": 10.0, "loaded_at": 8.0},
                 "manifest": {c.name: 20.0 for c in MANIFEST_TABLE_COLUMNS}}
    base = cost_usage.Tables(S.main_table_id, S.context_table_id, S.staging_dataset, col_bytes, {}, {},
                             manifest_id=S.manifest_table_id, manifest_scan=scan)
    return cost_scale.tables_at(base, items, 5.0, history_days, manifest_rows_per_item=2.0)


def merge_statement() -> str:
    exprs = [f"`{c}`" for c in MAIN_COLS]
    return merge_sql.merge_sql(S, SCHEMA, merge_sql.source_sql(S, BATCH, exprs), set(MAIN_COLS))


def test_appends_are_told_apart_by_destination():
    stream = "projects/p/datasets/{}/tables/{}/streams/_default"
    assert destination_kind(stream.format(S.staging_dataset, f"stg_{BATCH}")) == "staging"
    assert destination_kind(stream.format(S.main_dataset, MANIFEST_TABLE)) == MANIFEST_TABLE
    assert destination_kind("") == ""
    usage = {"worker": {"write_api_by_table": {"staging": {"rows": 2250.0}}},
             "coordinator": {"write_api_by_table": {MANIFEST_TABLE: {"rows": 900.0}}},
             "old": {"write_api": {"rows": 5.0}}}  # counted before destinations were: staging
    assert cost_scale.appended_rows(usage) == {"staging": 2255.0, MANIFEST_TABLE: 900.0}


def test_the_manifest_table_is_its_own_role_and_a_pin_query_reads_only_the_pin():
    sql = merge_statement()
    assert cost_sql.filters_pin(sql) and cost_sql.filters_pin(manifests.read_sql(S))
    assert not cost_sql.filters_pin(f"SELECT * FROM `{S.manifest_table_id}` WHERE manifest_batch_id = @b")
    big = 100_000
    pin = cost_usage.statement_cost(sql, tables(big)).per_table["manifest"]
    whole = cost_usage.statement_cost(sql, tables(big, scan="table")).per_table["manifest"]
    read = [c for c in (x.name for x in MANIFEST_TABLE_COLUMNS) if cost_sql.columns_read(sql, [c])]
    assert pin == pytest.approx(20.0 * len(read) * 2 * big)  # the pin's rows: 2 per item
    assert whole == pytest.approx(100 * pin)  # every pin of 100 days kept
    assert cost_usage.statement_cost(sql, tables(450)).billed >= 3 * 10 * 2**20  # 10 MB per table referenced


def test_the_manifest_keeps_the_pins_of_its_retention_only():
    assert tables(10, history_days=10_000).total_rows["manifest"] == pytest.approx(20 * 400)


def test_completion_queries_are_counted_per_route_or_from_the_completion_checks_before():
    usage = {"coordinator": {"invocations": {"POST /completions": {"n": 450, "queries": 1},
                                             "POST /consolidate": {"n": 1, "queries": 7}}}}
    assert cost_scale.completion_queries(usage, []) == 1
    before = {"coordinator": {"invocations": {"POST /completions": {"n": 450}}}}
    stmts = [{"caller": "staging.count_writes", "n": 425}, {"caller": "staging.staged_writes", "n": 2}]
    assert cost_scale.completion_queries(before, stmts) == 425


CAPS = {"worker": {"max_instances": 20, "concurrency": 5}, "coordinator": {"max_instances": 5, "concurrency": 10}}


def test_a_completion_waits_for_bigquery_only_as_often_as_it_queried():
    p = {"item_s": 0.3, "completion_s": 0.05, "bq_latency_s": 1.0}
    bulk = cost_designs.pace(10_000, {**p, "completion_queries": 1 / 10_000}, CAPS)
    per_completion = cost_designs.pace(10_000, {**p, "completion_queries": 1.0}, CAPS)
    assert bulk["completion_s"] == pytest.approx(0.0501)
    assert bulk["bottleneck"] == "worker" and per_completion["bottleneck"] == "coordinator"
    assert per_completion["work_s"] > 3 * bulk["work_s"]
