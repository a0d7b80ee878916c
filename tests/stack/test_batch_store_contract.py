"""One contract, two implementations: the in-memory batch store the flows' unit tests use
(tests/unit/batch_store_double.py) answers a scenario exactly as the real store on the Firestore
emulator does, so a unit test of a flow cannot pass on behaviour the real store does not have."""

from __future__ import annotations

import datetime as dt

from batchline.domain import claims, ids
from batchline.domain.item_shape import EXPECTED_ROWS
from batchline.domain.runs import Item
from batchline.domain.statuses import CONSOLIDATION_REQUESTED, FAILED
from tests.unit.batch_store_double import MemoryBatchStore

WRITE = {"p1": "a" * 32, "p2": "b" * 32, "p3": "c" * 32}


def scenario(store, batch_id: str) -> list:
    table = ids.batch_staging_table(batch_id)
    out = []
    batch = store.get_batch(batch_id)
    # each (result, whether the batch may now be done): the double answers the second from the exact
    # pending check, the real store from its progress shards; the flows' unit tests rely on both agreeing
    out.append(store.record_completion_counted(batch_id, "p1", table, EXPECTED_ROWS, 1, WRITE["p1"], batch))
    out.append(store.record_completion_counted(batch_id, "p1", table, EXPECTED_ROWS, 2, WRITE["p1"], batch))
    out.append(store.record_completion_counted(batch_id, "p3", table, EXPECTED_ROWS, 1, WRITE["p3"], batch))
    out.append(store.record_failure_counted(batch_id, "p1", "too late to fail a completed item"))
    out.append(store.any_pending(batch_id))
    out.append(store.reject_claim(batch, "p3", WRITE["p3"], claims.REDISPATCH, "nothing staged"))
    out.append(store.reject_claim(batch, "p3", WRITE["p3"], claims.REDISPATCH, "a stale verdict"))
    out.append(store.get_item(batch_id, "p3")["status"])
    out.append(store.record_failure_counted(batch_id, "p2", "dead-lettered", dead_lettered=True))
    out.append(store.may_be_done(store.get_batch(batch_id), "p2"))
    out.append(store.record_failure_counted(batch_id, "p3", "dead-lettered", dead_lettered=True))
    out.append(store.any_pending(batch_id))
    out.append(sorted(i["item_id"] for i in store.items_with_status(batch_id, FAILED)))
    out.append(store.claim_consolidation(batch_id, "all_items_terminal", "m-1"))
    out.append(store.claim_consolidation(batch_id, "all_items_terminal", "m-2"))
    out.append(store.claim_consolidation(batch_id, "all_items_terminal", "m-1"))  # m-1's redelivery, unpublished
    out.append(store.get_batch(batch_id)["status"])
    out.append(store.take_lease(batch_id, "t-1")[0])
    out.append(store.take_lease(batch_id, "t-2")[0])
    out.append(store.renew_lease(batch_id, "t-2"))
    out.append(store.renew_lease(batch_id, "t-1"))
    out.append(store.release_lease(batch_id, "t-1"))
    out.append(store.take_lease(batch_id, "t-2")[0])
    out.append(store.consolidation_dead_lettered(batch_id, "dead-lettered while held"))
    out.append(store.get_batch(batch_id)["status"])
    return out


def test_the_in_memory_store_answers_as_the_real_store_does(stack, day: dt.date):
    real = stack.store
    batch_id = ids.new_batch_id(day)
    items = [Item(f"p{i}", f"g{i}") for i in (1, 2, 3)]
    real.create_batch(batch_id, day, items, force=True, faults=None, dispatch_token="test")
    assert real.mark_running(batch_id, "test")
    memory = MemoryBatchStore()
    memory.seed(batch_id, day.isoformat(), {i.item_id: i.game_id for i in items})

    expected = scenario(real, batch_id)
    assert scenario(memory, batch_id) == expected
    # the scenario means something: not done while any item is pending, done with the last one
    assert expected[:4] == [("recorded", False), ("duplicate", False), ("recorded", False),
                            ("already_completed", False)], expected
    assert expected[8:12] == [("recorded", False), False, ("recorded", True), False], expected
    # the claim is won once; its winner's redelivery may still publish (no message id recorded yet)
    assert expected[13:17] == [True, False, True, CONSOLIDATION_REQUESTED], expected
    for item in ("p1", "p2", "p3"):
        a, b = real.get_item(batch_id, item), memory.get_item(batch_id, item)
        assert (a["status"], a.get("write_id")) == (b["status"], b.get("write_id")), item
