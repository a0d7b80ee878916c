"""The CLI's tables read like tables: records as rows, never Python dict reprs (issue 14: `dlq replay`
printed `{'message_id': ...}` in its table)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from batchline.ops import render

REPLAY_RESULT = {
    "status": "done", "error": None, "source": "work", "batch_filter": "20300101_0123456789ab", "scanned": 2,
    "replayed": [{"message_id": "m-1", "batch_id": "20300101_0123456789ab", "item_id": "player_0002",
                  "replayed_in": "20300101_ba9876543210"},
                 {"message_id": "m-2", "batch_id": "20300101_0123456789ab", "item_id": "player_0004",
                  "replayed_in": "20300101_ba9876543210"}],
    "not_replayed": [],
    "repair_batches": [{"batch_id": "20300101_ba9876543210", "game_date": "2030-01-01", "expected_items": 2}],
    "reconsolidated_batches": [], "skipped_unparsable": 0,
    "batches": [{"batch_id": "20300101_ba9876543210", "status": "consolidated", "error": None}],
}


@pytest.fixture
def printed(monkeypatch) -> io.StringIO:
    buf = io.StringIO()
    monkeypatch.setattr(render, "out", Console(file=buf, width=250, color_system=None))
    return buf


def test_a_replay_answer_prints_its_records_as_tables_of_rows(printed):
    render.key_values("replay_dead_letters r-1: done", REPLAY_RESULT)
    text = printed.getvalue()
    assert "{'" not in text and "'}" not in text, text
    assert "2 (table below)" in text and "1 (table below)" in text
    lines = text.splitlines()
    header = next(line for line in lines if "message_id" in line and "item_id" in line)
    assert "replayed_in" in header
    assert any("m-1" in line and "player_0002" in line and "20300101_ba9876543210" in line for line in lines)
    assert any("2030-01-01" in line and "20300101_ba9876543210" in line for line in lines)
    assert "not_replayed" in text and "scanned" in text  # the scalar part stays a name -> value table


def test_records_nested_deeper_read_as_key_value_text(printed):
    render.records("rows", ["item_id", "detail"], [{"item_id": "a", "detail": [{"k": 1, "v": None}, "x"]},
                                                   {"item_id": "b", "detail": {"n": {"m": 2}}}])
    text = printed.getvalue()
    assert "{'" not in text and "2: (k=1, v=-), x" in text and "n=m=2" in text
