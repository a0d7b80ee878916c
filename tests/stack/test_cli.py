"""The main job's contract, through the CLI itself on the session's stack: exit codes and the JSON
ledger's keys and values."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from batchline.cli import app

REQUIRED = {"batch_id", "expected_items", "merged_items", "dead_lettered_items", "missing_items",
            "duplicate_rows", "staging_tables_left", "main_table_mutating_dml", "elapsed_s"}


def _run(stack, tmp_path, *args: str):
    out = tmp_path / "ledger.json"
    result = CliRunner().invoke(app, ["run", "--state-dir", stack.info.state_dir, "--json", str(out), *args])
    return result, (json.loads(out.read_text()) if out.exists() else None)


def test_run_prints_and_writes_the_ledger_and_exits_0(stack, day, tmp_path):
    result, ledger = _run(stack, tmp_path, "--players", "9", "--game-date", day.isoformat(),
                          "--faults", "poison=player_0005", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert REQUIRED <= set(ledger)
    assert (ledger["expected_items"], ledger["merged_items"], ledger["dead_lettered_items"]) == (9, 8, 1)
    assert ledger["missing_items"] == [] and ledger["duplicate_rows"] == 0
    assert ledger["staging_tables_left"] == 0 and ledger["main_table_mutating_dml"] == 1
    assert ledger["elapsed_s"] > 0 and ledger["ok"] is True
    assert "loss ledger" in result.output and "player_0005" in result.output
    assert stack.store.get_batch(ledger["batch_id"])["status"] == "consolidated"


def test_run_exits_1_when_the_ledger_shows_a_loss(stack, day, tmp_path):
    result, ledger = _run(stack, tmp_path, "--players", "3", "--game-date", day.isoformat(), "--faults", "zero_merge=1")
    assert result.exit_code == 1
    assert ledger["ok"] is False and ledger["staging_tables_left"] == 3 and ledger["merged_items"] == 0
    assert any("consolidation_failed" in p for p in ledger["problems"])


def test_run_rejects_a_bad_fault_spec_before_starting_anything(stack, tmp_path):
    result, ledger = _run(stack, tmp_path, "--players", "3", "--faults", "staging_write=2")
    assert result.exit_code == 2 and ledger is None
    assert "staging_write" in result.output
