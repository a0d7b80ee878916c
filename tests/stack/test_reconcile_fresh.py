"""Issue 8 on the real stack: a start refuses stale inputs; the reconciliation merges (or drops, when a
newer run replaced them) orphaned staging tables; reconciling twice never starts two repair batches."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from batchline.local.provision import seed_context, synthetic_context
from batchline.state import CONSOLIDATED


def _log_lines(stack, function: str) -> list[dict]:
    out = []
    for line in Path(stack.info.handles[function].log_path).read_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def test_stale_inputs_are_refused_and_logged(stack, day):
    loaded = dt.datetime.now(dt.UTC) - dt.timedelta(hours=30)
    seed_context(stack.clients.bq, stack.clients.settings, day, synthetic_context(day, 3), loaded_at=loaded)
    r = stack.start(day)
    assert r.status_code == 424, r.text
    body = r.json()
    assert body["game_date"] == day.isoformat() and body["max_age_hours"] == 24
    assert dt.datetime.fromisoformat(body["newest_loaded_at"]) == loaded
    assert stack.store.active_batch_of(day) is None, "nothing was registered for the date"
    refused = [x for x in _log_lines(stack, "coordinator")
               if x.get("event") == "start_refused_stale_inputs" and x.get("game_date") == day.isoformat()]
    assert len(refused) == 1 and refused[0]["severity"] == "ERROR" and refused[0]["max_age_hours"] == 24
    assert refused[0]["context_rows"] == 3
    # No rows at all stays a different answer (400), not "stale".
    empty = stack.start(day + dt.timedelta(days=3000))
    assert empty.status_code == 400 and "no valid context rows" in empty.json()["error"]
    # Once the upstream load is redone, the same start runs.
    batch, ledger = stack.run(day, 3)
    assert batch["status"] == CONSOLIDATED and ledger.ok
