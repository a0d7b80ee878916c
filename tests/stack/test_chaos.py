"""A handful of random fault schedules on the real stack, each judged from the systems of record
(`batchline chaos` runs many more; docs/testing.md quotes such a run)."""

from __future__ import annotations

import json
import random

from typer.testing import CliRunner

from batchline.domain import ids
from batchline.domain.statuses import TERMINAL_STATUSES
from batchline.local import chaos
from batchline.ops.cli import app


def test_random_fault_schedules_lose_nothing_silently(stack):
    rng = random.Random(20261123)
    outcomes = [chaos.run_schedule(stack.info, stack.clients, chaos.draw(rng, n)) for n in range(3)]
    summary = chaos.summarize(outcomes)
    assert summary["items_lost"] == 0 and summary["duplicate_rows"] == 0, [o.problems for o in outcomes]
    assert summary["max_successful_merges_per_batch"] <= 1
    assert summary["failed_schedules"] == [], [o.as_dict() for o in outcomes if o.problems]
    assert sum(summary["faults_by_kind"].values()) > 0, "the schedules injected something"
    accounted = summary["merged"] + summary["dead_lettered_with_reason"] + summary["reported_missing"]
    assert accounted == summary["items"], "every expected item is in exactly one part"


def test_chaos_command_with_the_seed_that_crashed_runs_and_writes_its_json(stack, tmp_path):
    """Issue 14: `batchline chaos --seed 31337` drew a block of dates after 2100; /start answered 400
    on the first schedule and the command died with a traceback, writing no JSON."""
    out = tmp_path / "chaos.json"
    result = CliRunner().invoke(app, ["chaos", "--schedules", "1", "--seed", "31337", "--json", str(out),
                                      "--state-dir", stack.info.state_dir])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["seed"] == 31337 and written["summary"]["schedules"] == 1
    assert written["summary"]["failed_schedules"] == [] and written["summary"]["items_lost"] == 0
    (outcome,) = written["outcomes"]
    assert outcome["batch_status"] in TERMINAL_STATUSES
    assert chaos.schedule_day(outcome["schedule"]["n"]) <= ids.LAST_GAME_DATE
