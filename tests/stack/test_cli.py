"""The main job's contract, through the CLI itself on the session's stack: exit codes and the JSON
ledger's keys and values."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from batchline.domain import faults
from batchline.ops.cli import app

REQUIRED = {"batch_id", "expected_items", "merged_items", "dead_lettered_items", "missing_items",
            "duplicate_rows", "staging_tables_left", "main_table_mutating_dml", "elapsed_s",
            "recovered_items", "recovered_ids", "dead_lettered_ids", "main_table_mutating_dml_window",
            "coverage_pct", "complete", "verdict"}


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
    # accounted for (exit 0) but not complete, and 8 of 9 is below the 95 % coverage warning level
    assert ledger["complete"] is False and ledger["coverage_pct"] == 88.89
    assert ledger["verdict"] == (f"ACCOUNTED FOR but INCOMPLETE: 1 dead-lettered (replay with: batchline dlq "
                                 f"replay --batch {ledger['batch_id']}); coverage 88.9% below the 95% warning level")
    assert "loss ledger" in result.output and "player_0005" in result.output and "INCOMPLETE" in result.output
    assert stack.store.get_batch(ledger["batch_id"])["status"] == "consolidated"


def test_run_exits_1_when_the_ledger_shows_a_loss(stack, day, tmp_path):
    result, ledger = _run(stack, tmp_path, "--players", "3", "--game-date", day.isoformat(), "--faults", "zero_merge=1")
    assert result.exit_code == 1
    assert ledger["ok"] is False and ledger["staging_tables_left"] == 1 and ledger["merged_items"] == 0
    assert any("consolidation_failed" in p for p in ledger["problems"])


def test_run_rejects_a_bad_fault_spec_before_starting_anything(stack, tmp_path):
    result, ledger = _run(stack, tmp_path, "--players", "3", "--faults", "staging_write=2")
    assert result.exit_code == 2 and ledger is None
    assert "staging_write" in result.output


def test_run_ledger_partition_adds_up_when_dead_lettered_items_are_recovered(stack, day, tmp_path):
    """Issue 8: an item dead-lettered after its rows were staged is merged (recovered), and
    counted once: merged + dead-lettered + missing == expected."""
    spec, players, attempts = "completion_publish=0.9,poison=player_0003", 30, stack.info.max_delivery_attempts
    fs = faults.parse(spec, seed=1)
    items = [f"player_{n:04d}" for n in range(players)]
    doomed = fs.exhausted_items(items, attempts)
    recovered = [i for i in doomed if any(not fs.fires("staging_write", i, n) for n in range(1, attempts + 1))]
    lost = sorted(set(doomed) - set(recovered))
    assert recovered and lost == ["player_0003"], "the seed must produce both kinds"
    result, ledger = _run(stack, tmp_path, "--players", str(players), "--game-date", day.isoformat(),
                          "--faults", spec, "--seed", "1")
    assert result.exit_code == 0, result.output
    assert ledger["recovered_ids"] == recovered and ledger["recovered_items"] == len(recovered)
    assert ledger["dead_lettered_ids"] == lost and ledger["dead_lettered_items"] == len(lost)
    assert ledger["merged_items"] == players - len(lost) and ledger["missing_items"] == []
    assert ledger["merged_items"] + ledger["dead_lettered_items"] + len(ledger["missing_items"]) == players
    assert ledger["complete"] is False and ledger["main_table_mutating_dml"] == 1
    assert ledger["verdict"].startswith(f"ACCOUNTED FOR but INCOMPLETE: {len(lost)} dead-lettered")


def test_run_verdict_is_ok_complete_for_a_clean_batch(stack, day, tmp_path):
    result, ledger = _run(stack, tmp_path, "--players", "4", "--game-date", day.isoformat())
    assert result.exit_code == 0, result.output
    assert ledger["complete"] is True and ledger["verdict"] == "OK: complete" and ledger["coverage_pct"] == 100.0
    assert "OK: complete" in result.output


def _cli(stack, *args: str):
    result = CliRunner().invoke(app, [*args, "--state-dir", stack.info.state_dir])
    return result, (json.loads(result.stdout) if "--json" in args and result.stdout.startswith("{") else None)


def test_start_without_context_names_local_seed_which_loads_the_date(stack, day):
    """Issue 14: `batchline start DATE` said "no valid context rows ... nothing to run" and nothing said
    how to load them. The refusal names `batchline local seed`, and that command makes the start work."""
    result, out = _cli(stack, "start", day.isoformat(), "--json")
    assert result.exit_code == 1 and out["status"] == "refused", result.output
    assert f"`batchline local seed {day}`" in out["result"]["error"]
    result, seeded = _cli(stack, "local", "seed", day.isoformat(), "--players", "4", "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    assert seeded == {"game_date": day.isoformat(), "context_table": stack.clients.settings.context_table_id,
                      "rows": 4, "first_item": "player_0000", "last_item": "player_0003", "seed": 3}
    rows = list(stack.clients.bq.query(
        f"SELECT player_lookup, loaded_at FROM `{stack.clients.settings.context_table_id}` "
        f"WHERE game_date = '{day.isoformat()}' ORDER BY player_lookup").result())
    assert [r["player_lookup"] for r in rows] == [f"player_{n:04d}" for n in range(4)]
    assert all(r["loaded_at"] is not None for r in rows)  # fresh: the start's freshness check passes
    result, out = _cli(stack, "start", day.isoformat(), "--wait", "--json")
    assert result.exit_code == 0, result.output
    assert out["result"]["expected_items"] == 4 and out["batches"][0]["status"] == "consolidated"
    # the human form says what to do next
    result, _ = _cli(stack, "local", "seed", day.isoformat(), "--players", "2")
    assert result.exit_code == 0 and f"batchline start {day}" in result.stdout


def test_local_seed_refuses_a_deployment_target(stack, day):
    for target in (["--project", "some-project"], ["--stack-outputs", "outputs.json"]):
        result, _ = _cli(stack, "local", "seed", day.isoformat(), *target)
        assert result.exit_code == 2 and "upstream loader" in result.output, result.output


def test_a_fault_spec_naming_items_the_batch_lacks_is_refused(stack, day, tmp_path):
    """Issue 14: `--faults poison=p003` named no item of the batch, was accepted and the run reported
    "OK: complete". Refused by /start (400, naming the items) and by `batchline run` before it starts."""
    stack.seed(day, 3)
    resp = stack.start(day, faults="poison=p003+player_0001")
    assert resp.status_code == 400 and "p003" in resp.json()["error"], resp.text
    assert "player_0001" not in resp.json()["error"].split("does not have:")[1].split("(")[0]
    assert stack.store.active_batch_of(day) is None, "nothing was registered"
    result, ledger = _run(stack, tmp_path, "--players", "3", "--game-date", day.isoformat(), "--faults", "poison=p003")
    assert result.exit_code == 2 and ledger is None
    assert "p003" in result.output and "a run of 3 players" in result.output
