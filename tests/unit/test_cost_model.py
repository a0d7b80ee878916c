"""The pricing arithmetic of bench/cost_model.py: every minimum, rounding and unit conversion the cost
report depends on, so a wrong one fails here rather than in a figure nobody checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import cost_model as m  # noqa: E402
from cost_prices import PRICES, QUOTAS  # noqa: E402

MIB, GIB, TIB = 2**20, 2**30, 2**40


def test_a_tiny_query_is_billed_the_10_mb_minimum_per_table():
    assert m.billed_query_bytes({"staging": 1_000}) == 10 * MIB
    assert m.billed_query_bytes({"staging": 1_000, "main": 5}) == 20 * MIB  # each referenced table its own 10 MB


def test_a_query_of_no_table_is_billed_the_per_query_minimum():
    assert m.billed_query_bytes({}) == 10 * MIB


def test_billed_bytes_above_the_minimum_round_up_to_a_whole_mb():
    assert m.billed_query_bytes({"main": 15 * MIB}) == 15 * MIB
    assert m.billed_query_bytes({"main": 15 * MIB + 1}) == 16 * MIB
    assert m.billed_query_bytes({"main": 15 * MIB, "staging": 1}) == 25 * MIB


def test_on_demand_dollars_are_per_tib():
    assert m.on_demand_usd(TIB) == pytest.approx(6.25)
    assert m.on_demand_usd(10 * MIB) == pytest.approx(6.25 * 10 / 2**20)


def test_dml_bytes_add_the_updated_partitions_only_when_rows_change():
    assert m.dml_bytes(100, 50, "MERGE") == 150
    assert m.dml_bytes(100, 50, "MERGE", only_inserts=True) == 100
    assert m.dml_bytes(100, 50, "INSERT") == 100
    assert m.dml_bytes(100, 50, "UPDATE") == 150
    assert m.dml_bytes(100, 50, "SELECT") == 100


def test_logical_sizes_of_values():
    assert m.value_logical_bytes("STRING", "abc") == 5
    assert m.value_logical_bytes("STRING", "é") == 4  # 2 + UTF-8 bytes, not characters
    assert m.value_logical_bytes("INT64", 1) == 8
    assert m.value_logical_bytes("FLOAT64", 0.5) == 8
    assert m.value_logical_bytes("TIMESTAMP", "2026-12-06T00:00:00Z") == 8
    assert m.value_logical_bytes("DATE", "2026-12-06") == 8
    assert m.value_logical_bytes("BOOL", True) == 1
    assert m.value_logical_bytes("STRING", None) == 0
    with pytest.raises(ValueError):
        m.value_logical_bytes("GEOGRAPHY", "POINT(0 0)")


def test_mean_column_bytes_over_rows():
    rows = [{"a": "x", "b": 1}, {"a": "xyz", "b": None}]
    assert m.mean_column_bytes(rows, {"a": "STRING", "b": "INT64"}) == {"a": 4.0, "b": 4.0}
    assert m.mean_column_bytes([], {"a": "STRING"}) == {"a": 0.0}


def test_pubsub_message_volume_and_the_1000_byte_request_minimum():
    assert m.pubsub_message_bytes(100, {"k": "vv"}, message_id_len=16) == 100 + 3 + 20 + 16
    assert m.pubsub_request_billable([139]) == 1000
    assert m.pubsub_request_billable([600, 600]) == 1200  # batched messages share one request's minimum
    assert m.pubsub_usd(TIB) == pytest.approx(40.0)


def test_firestore_prices_are_per_100000_operations():
    assert m.firestore_usd(100_000, 0, 0) == pytest.approx(PRICES["fs_read_per_100k"].value)
    assert m.firestore_usd(0, 100_000, 0) == pytest.approx(PRICES["fs_write_per_100k"].value)
    assert m.firestore_usd(0, 0, 100_000) == pytest.approx(PRICES["fs_delete_per_100k"].value)


def test_request_time_rounds_up_to_100_ms():
    assert m.billable_request_seconds(0.01) == pytest.approx(0.1)
    assert m.billable_request_seconds(0.1) == pytest.approx(0.1)
    assert m.billable_request_seconds(0.1001) == pytest.approx(0.2)
    assert m.billable_request_seconds(0.0) == 0


def test_cloud_run_units():
    assert m.run_usd(1, 0, 0) == pytest.approx(0.000024)
    assert m.run_usd(0, 1, 0) == pytest.approx(PRICES["run_gib_s"].value)
    assert m.run_usd(0, 0, 1_000_000) == pytest.approx(0.40)
    assert m.memory_gib("512Mi") == 0.5
    assert m.memory_gib("1Gi") == 1.0
    assert m.memory_gib("2G") == pytest.approx(2e9 / GIB)


def test_storage_and_write_api_are_per_gib():
    assert m.storage_usd(GIB, m.SECONDS_PER_MONTH) == pytest.approx(0.02)
    assert m.storage_usd(GIB, 60) == pytest.approx(0.02 * 60 / m.SECONDS_PER_MONTH)
    assert m.write_api_usd(GIB) == pytest.approx(0.025)


def test_growing_table_fills_spread_evenly():
    assert m.growing_table_fills(4) == [0.125, 0.375, 0.625, 0.875]
    assert m.growing_table_fills(0) == []


def test_beyond_free():
    assert m.beyond_free(30, 20) == 10
    assert m.beyond_free(10, 20) == 0


def test_every_figure_names_its_page_and_how_sure_it_is():
    for key, f in {**PRICES, **QUOTAS}.items():
        assert f.url.startswith("https://cloud.google.com/"), key
        assert f.source in ("google", "google-old", "third-party", "unverified"), key
        assert f.value > 0, key
