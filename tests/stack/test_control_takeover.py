"""Issue 17.6 on the real stack: a `start` whose coordinator dies mid-dispatch is taken over by its
own redelivery once the control request's short lease lapses, and resumed; no person, no stall check."""

from __future__ import annotations

import os
import signal
import time

from batchline.domain import control_requests as ctl
from batchline.domain.statuses import CONSOLIDATED, DISPATCHING
from batchline.flows.control import RequestStore
from batchline.flows.ledger import compute
from batchline.local import stack as local_stack


def _pgid(stack, name: str) -> int:
    return local_stack.load(stack.info.state_dir).handles[name].pgid


def _until(predicate, timeout_s: float, what: str, every_s: float = 0.3):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"not {what} after {timeout_s}s")


def test_a_start_whose_coordinator_died_mid_dispatch_is_taken_over_and_resumed(stack, day):
    stack.seed(day, 80)
    req = ctl.parse_control({"action": "start", "request_id": f"crash-{day}", "game_date": day.isoformat()})
    stack.clients.publish("control", req.model_dump_json().encode(), request_id=req.request_id)
    batch_id = _until(lambda: stack.store.active_batch_of(day), 60, "registered", every_s=0.02)
    pgid = _pgid(stack, "coordinator")
    os.killpg(pgid, signal.SIGSTOP)  # frozen at once, then killed: it dies mid-dispatch
    try:
        assert stack.store.get_batch(batch_id)["status"] == DISPATCHING, "the crash must land mid-dispatch"
    finally:
        os.killpg(pgid, signal.SIGKILL)
    healed = local_stack.up(stack.info.state_dir)  # what `batchline local supervise` does on its next tick
    stack.info.services.update(healed.services)
    store = RequestStore(stack.clients.fs)
    record = _until(lambda: (r := store.get(req.request_id)) and r["status"] != "accepted" and r, 150, "answered")
    assert record["status"] == "done", record
    assert record["batch_id"] == batch_id and record["result"]["batch_id"] == batch_id, "the record names the batch"
    assert record["result"]["resumed"] is True and record["attempts"] >= 2
    batch = stack.wait(batch_id)
    assert batch["status"] == CONSOLIDATED and batch["merged_items"] == 80
    assert compute(stack.clients, batch_id, 0.0).complete
    resumed = [x for x in stack.log_lines("coordinator") if x.get("event") == "dispatch_resumed"
               and x.get("batch_id") == batch_id]
    assert [x.get("by") for x in resumed] == ["control"], "resumed by the control request's takeover, nothing else"
