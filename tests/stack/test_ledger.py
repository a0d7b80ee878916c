"""Issue 13: the ledger counts per batch, and concurrent ledgers cannot disturb each other."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

from batchline.adapters.dead_letter_records import DeadLetterLog
from batchline.domain.statuses import CONSOLIDATED
from batchline.flows.ledger import compute


def test_concurrent_ledgers_all_see_the_dead_lettered_item(stack, day):
    batch, first = stack.run(day, 6, faults="poison=player_0002")
    assert batch["status"] == CONSOLIDATED and first.dead_lettered_ids == ["player_0002"]
    with ThreadPoolExecutor(max_workers=12) as pool:
        ledgers = list(pool.map(lambda _: compute(stack.clients, batch["batch_id"], 0.0), range(12)))
    assert [(x.dead_lettered_ids, x.missing_items, x.merged_items, x.ok) for x in ledgers] == \
        [(["player_0002"], [], 5, True)] * 12


def test_mutating_dml_is_counted_per_batch_when_batches_overlap(stack, day):
    other = day + dt.timedelta(days=5000)  # a date no other test uses
    for d in (day, other):
        stack.seed(d, 8)
    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(lambda d: stack.start(d), (day, other)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    batches = [stack.wait(r.json()["batch_id"]) for r in responses]
    assert [b["status"] for b in batches] == [CONSOLIDATED] * 2
    ledgers = [compute(stack.clients, b["batch_id"], 0.0) for b in batches]
    # each batch ran one MERGE; both MERGEs fall in each batch's window
    assert [x.main_table_mutating_dml for x in ledgers] == [1, 1]
    assert all(x.main_table_mutating_dml_window >= 2 for x in ledgers)
    assert all(x.ok and x.complete for x in ledgers), [x.problems for x in ledgers]


def test_a_recorded_dead_letter_counts_even_after_the_item_completed(stack, day):
    """The dedicated record (what the dead-letter handler writes) is read by the ledger: an item
    dead-lettered and then merged anyway is reported as recovered, not silently as merged."""
    batch, ledger = stack.run(day, 3)
    assert ledger.recovered_ids == [] and ledger.complete
    DeadLetterLog(stack.clients.fs).record(batch["batch_id"], "player_0001", "msg-dl-1", 5)
    DeadLetterLog(stack.clients.fs).record(batch["batch_id"], "player_0001", "msg-dl-1", 5)  # redelivery
    again = compute(stack.clients, batch["batch_id"], 0.0)
    assert again.recovered_ids == ["player_0001"] and again.dead_lettered_items == 0 and again.merged_items == 3
    assert DeadLetterLog(stack.clients.fs).items(batch["batch_id"]) == {"player_0001"}
