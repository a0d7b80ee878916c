"""Production recovers from a crash or a stall because Cloud Scheduler calls the stall check every
minute. Here the local stack's own scheduler does, with the dev stack's jobs (its stall check
overridden to every minute, as someone working outside the configured hours would), and no test calls
/stall-check: a claim whose coordinator was killed before publishing it, and a batch whose worker
stopped answering mid-batch, both end consolidated through the scheduled stall check alone.

The stack is one of this module's own: its coordinator runs with a 1-minute stall period (the session
stack keeps the default 30, which other tests rely on). Seconds to recovery are printed (run with -s).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time

import pytest

from batchline.domain import ids
from batchline.domain.runs import Item
from batchline.domain.statuses import CONSOLIDATED, CONSOLIDATION_REQUESTED
from batchline.flows.ledger import compute
from batchline.local import processes as procs
from batchline.local import schedule_config
from batchline.local import scheduler_runs as runs
from batchline.local import stack as local_stack
from batchline.settings import Settings
from tests.stack.conftest import Stack, own_stack

WAIT_S = 480  # a stalled batch needs two stall periods and the minute boundaries after them
DAY_A, DAY_B = dt.date(2031, 3, 1), dt.date(2031, 3, 2)


@pytest.fixture(scope="module")
def scheduled(tmp_path_factory):
    """A stack whose scheduler runs dev's jobs, the stall check every minute, the others paused."""
    state = tmp_path_factory.mktemp("scheduled-stack")
    jobs = schedule_config.load("dev", {"stall-check": "* * * * *", "start": "off", "reconcile": "off"})
    with own_stack(state, Settings(project="batchline-sched", stall_minutes=1), schedules=jobs) as stack:
        try:
            yield stack, _set_up_both(stack)
        finally:
            worker = (local_stack.load(state) or stack.info).handles["worker"]
            try:
                os.killpg(worker.pgid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def _set_up_both(stack: Stack) -> dict:
    """Both failures at once (the stall check handles every batch each minute), the claim first: the
    heal that brings the killed coordinator back would also restart a stopped worker."""
    return {"claim": _a_claim_whose_coordinator_was_killed(stack), "stall": _a_batch_whose_worker_stops(stack)}


def _a_claim_whose_coordinator_was_killed(stack: Stack) -> dict:
    s = stack.clients.settings
    items = [Item(f"player_{i:04d}", "g1") for i in range(3)]
    batch_id = ids.new_batch_id(DAY_A)
    stack.store.create_batch(batch_id, DAY_A, items, force=True, faults=None, dispatch_token="t")
    stack.store.mark_running(batch_id, "t")
    schema = list(stack.clients.bq.get_table(s.main_table_id).schema)
    for it in items:
        write_id = stack.stage(s, batch_id, DAY_A, it.item_id, schema)
        stack.store.record_completion(batch_id, it.item_id, ids.batch_staging_table(batch_id), 5, 1, write_id)
    # The last completion's coordinator claimed the consolidation and was killed before publishing it.
    assert stack.store.claim_consolidation(batch_id, "all_items_terminal", claimant="killed-before-publishing")
    coordinator = local_stack.load(stack.info.state_dir).handles["coordinator"]
    os.kill(coordinator.pid, signal.SIGKILL)
    healed = local_stack.up(stack.info.state_dir)  # what `batchline local supervise` does
    assert healed.handles["coordinator"].pid != coordinator.pid
    batch = stack.store.get_batch(batch_id)
    assert batch["status"] == CONSOLIDATION_REQUESTED and not batch.get("consolidation_message_id")
    return {"batch_id": batch_id, "since": batch["consolidation_requested_at"]}


def _a_batch_whose_worker_stops(stack: Stack) -> dict:
    """A real batch; once a few items are done its worker is stopped (SIGSTOP: alive, connections
    accepted, nothing answered). Pub/Sub's pushes hang until their deadline instead of failing fast,
    so nothing is dead-lettered for many minutes: the batch just stops moving."""
    stack.seed(DAY_B, 40)
    resp = stack.start(DAY_B)
    assert resp.status_code == 200, resp.text
    batch_id = resp.json()["batch_id"]
    deadline = time.monotonic() + 120
    while len(stack.store.items_with_status(batch_id, "completed")) < 2:
        assert time.monotonic() < deadline, "the worker should complete a first few items"
        time.sleep(0.05)
    worker = local_stack.load(stack.info.state_dir).handles["worker"]
    os.killpg(worker.pgid, signal.SIGSTOP)
    since = dt.datetime.now(dt.UTC)
    assert procs.is_alive(worker)
    pending = stack.store.items_with_status(batch_id, "pending")
    assert pending, "the worker must stop mid-batch for this test to mean anything"
    return {"batch_id": batch_id, "since": since}


def _stall_actions(stack: Stack, batch_id: str) -> list[str]:
    return [x.get("action") for x in stack.log_lines("coordinator")
            if x.get("event") == "batch_stalled" and x.get("batch_id") == batch_id]


def _scheduled_stall_checks(stack: Stack) -> list[dict]:
    job = runs.read(stack.info.state_dir)["jobs"].get("stall-check", {})
    return [e for e in job.get("executions", []) if e["trigger"] == "schedule"]


def test_a_claim_nobody_published_is_consolidated_by_the_scheduled_stall_check(scheduled):
    stack, cases = scheduled
    case = cases["claim"]
    batch = stack.wait(case["batch_id"], WAIT_S)
    assert batch["status"] == CONSOLIDATED and batch["merged_items"] == 3
    assert "consolidation_republished" in _stall_actions(stack, case["batch_id"]), \
        "only the stall check republishes a claim, and only the scheduler called it"
    assert any(e["outcome"] == runs.SUCCEEDED for e in _scheduled_stall_checks(stack))
    assert compute(stack.clients, case["batch_id"], 0).ok
    print(f"\nRECOVERY claim nobody published: {(batch['consolidated_at'] - case['since']).total_seconds():.1f} s "
          "from the claim to consolidated")


def test_a_batch_whose_worker_stopped_is_consolidated_by_the_scheduled_stall_check(scheduled):
    stack, cases = scheduled
    case = cases["stall"]
    batch = stack.wait(case["batch_id"], WAIT_S)
    assert batch["status"] == CONSOLIDATED
    assert _stall_actions(stack, case["batch_id"])[:2] == ["redispatched", "consolidating_partial"], \
        "re-dispatched once, then consolidated partially a stall period later"
    failed = batch["failed_items"]
    # an item stopped after its append but before its completion is failed as stalled, and then merged
    # from its staged write anyway (recovered): failed, but not lost
    unmerged = sorted(set(failed) - set(batch["recovered_items"]))
    assert unmerged and batch["merged_items"] >= 2 and batch["merged_items"] + len(unmerged) == 40
    reasons = {stack.store.get_item(case["batch_id"], i)["failure_reason"].split(":")[0] for i in failed}
    assert reasons == {"stalled"}
    ledger = compute(stack.clients, case["batch_id"], 0)
    assert sorted(ledger.missing_items) == unmerged and ledger.duplicate_rows == 0, ledger.problems
    assert ledger.main_table_mutating_dml == 1
    print(f"\nRECOVERY worker stopped: {(batch['consolidated_at'] - case['since']).total_seconds():.1f} s from the "
          f"stop to consolidated ({batch['merged_items']} merged, {len(failed)} failed as stalled)")
