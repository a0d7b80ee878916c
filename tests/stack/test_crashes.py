"""kill -9 and frozen emulators on the real stack, with the supervisor's heal bringing back what died.

Expected every time: every item merged or dead-lettered and reported, exactly one successful MERGE,
no duplicate rows, staging evidence kept until verified. (An emulator killed outright loses what it
held in memory, so outages of the emulators are frozen processes, SIGSTOP then SIGCONT: the same
silence to every client, with the state still there afterwards.)
"""

from __future__ import annotations

import os
import signal
import time

from batchline.domain.lifecycle import LEASE_TTL
from batchline.domain.statuses import COMPLETED, CONSOLIDATED, CONSOLIDATING, TERMINAL_STATUSES
from batchline.flows.ledger import compute
from batchline.local import stack as local_stack


def _handle(stack, name: str):
    return local_stack.load(stack.info.state_dir).handles[name]


def _kill9(stack, name: str) -> None:
    os.killpg(_handle(stack, name).pgid, signal.SIGKILL)


def _heal(stack) -> None:
    """What `batchline local supervise` does on its next tick."""
    healed = local_stack.up(stack.info.state_dir)
    stack.info.services.update(healed.services)


def _until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"not {what} after {timeout_s}s")


def _finish_with_stall_checks(stack, batch_id: str) -> dict:
    """The scheduler's stall check, every few seconds here (every minute deployed), until terminal."""
    deadline = time.monotonic() + LEASE_TTL.total_seconds() + 120
    while time.monotonic() < deadline:
        batch = stack.store.get_batch(batch_id)
        if batch["status"] in TERMINAL_STATUSES:
            return batch
        stack.stall_check(stall_minutes=30)
        time.sleep(5)
    raise AssertionError(f"batch {batch_id} not terminal: {stack.store.get_batch(batch_id)}")


def _successful_merges(stack, batch_id: str) -> int:
    return sum(1 for j in stack.clients.bq.list_jobs(all_users=True, max_results=5000)
               if j.job_id.startswith(f"batchline_merge_{batch_id}_") and j.state == "DONE" and not j.error_result)


def _assert_whole(stack, batch: dict, players: int) -> None:
    ledger = compute(stack.clients, batch["batch_id"], 0.0)
    assert batch["status"] == CONSOLIDATED and ledger.ok, (batch.get("error"), ledger.problems)
    assert ledger.merged_items + ledger.dead_lettered_items == players and ledger.missing_items == []
    assert ledger.duplicate_rows == 0 and ledger.staging_tables_left == 0
    assert _successful_merges(stack, batch["batch_id"]) == 1


def _start(stack, day, players: int, faults: str | None = None) -> str:
    stack.seed(day, players)
    resp = stack.start(day, faults=faults)
    assert resp.status_code == 200, resp.text
    return resp.json()["batch_id"]


def test_coordinator_killed_between_merge_and_cleanup(stack, day):
    batch_id = _start(stack, day, 4, faults="pause_after_merge=10")
    _until(lambda: stack.store.get_batch(batch_id).get("merge_result"), 120, "merged")
    _kill9(stack, "coordinator")
    assert stack.store.get_batch(batch_id)["status"] == CONSOLIDATING
    _heal(stack)
    batch = _finish_with_stall_checks(stack, batch_id)
    _assert_whole(stack, batch, 4)


def test_coordinator_killed_mid_merge(stack, day):
    batch_id = _start(stack, day, 4, faults="pause_in_merge=10")
    _until(lambda: any(j.job_id.startswith(f"batchline_merge_{batch_id}_") for j in
                       stack.clients.bq.list_jobs(all_users=True, max_results=5000)), 120, "MERGE submitted")
    _kill9(stack, "coordinator")
    _heal(stack)
    batch = _finish_with_stall_checks(stack, batch_id)
    _assert_whole(stack, batch, 4)


def test_worker_killed_mid_batch(stack, day):
    batch_id = _start(stack, day, 20)
    _until(lambda: stack.store.count_items(batch_id, COMPLETED) >= 3, 120, "started")
    _kill9(stack, "worker")
    time.sleep(3)
    _heal(stack)
    _assert_whole(stack, stack.wait(batch_id), 20)


def test_coordinator_killed_during_a_burst_of_completions(stack, day):
    batch_id = _start(stack, day, 20)
    _until(lambda: stack.store.count_items(batch_id, COMPLETED) >= 5, 120, "completing")
    _kill9(stack, "coordinator")
    time.sleep(3)
    _heal(stack)
    _assert_whole(stack, _finish_with_stall_checks(stack, batch_id), 20)


def _freeze(stack, name: str, seconds: float) -> None:
    pgid = _handle(stack, name).pgid
    os.killpg(pgid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.killpg(pgid, signal.SIGCONT)


def test_bigquery_emulator_silent_for_twenty_seconds_mid_batch(stack, day):
    batch_id = _start(stack, day, 12)
    _until(lambda: stack.store.count_items(batch_id, COMPLETED) >= 2, 120, "started")
    _freeze(stack, "bigquery", 20)
    _assert_whole(stack, _finish_with_stall_checks(stack, batch_id), 12)


def test_firestore_emulator_silent_for_twenty_seconds_mid_batch(stack, day):
    batch_id = _start(stack, day, 12)
    _until(lambda: stack.store.count_items(batch_id, COMPLETED) >= 2, 120, "started")
    _freeze(stack, "firestore", 20)
    _assert_whole(stack, _finish_with_stall_checks(stack, batch_id), 12)
