"""The progress shards that gate the exact "anything pending?" query (batchline/domain/progress.py), on the
real Firestore emulator: a batch may be done exactly when every item reached a terminal state, counted
once, in the same commit as the item's own transition."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from batchline.adapters.batch_store import ItemSnapshot
from batchline.domain import ids, progress
from batchline.domain.runs import Item


def test_shards_cover_every_item_and_an_items_shard_is_stable():
    items = [f"player_{n:04d}" for n in range(450)]
    sizes = progress.shard_sizes(items)
    assert len(sizes) == progress.shard_count(450) == 9 and sum(sizes) == 450
    assert max(sizes) < 2 * progress.SHARD_ITEMS, "no shard takes a disproportionate share"
    assert Counter(progress.shard_of(i, 9) for i in items) == dict(enumerate(sizes))


@given(st.integers(min_value=0, max_value=100_000))
def test_there_is_one_shard_per_fifty_items_and_at_least_one(n):
    shards = progress.shard_count(n)
    assert shards >= 1 and (shards - 1) * progress.SHARD_ITEMS < max(n, 1) <= shards * progress.SHARD_ITEMS


def _batch(stack, day, n: int) -> tuple[str, list[Item], dict]:
    items = [Item(f"player_{k:04d}", "g1") for k in range(n)]
    batch_id = ids.new_batch_id(day)
    stack.store.create_batch(batch_id, day, items, force=True, faults=None, dispatch_token="t")
    stack.store.mark_running(batch_id, "t")
    return batch_id, items, stack.store.get_batch(batch_id)


def _complete(stack, batch: dict, item_id: str, *, snapshot: bool) -> tuple[str, bool]:
    batch_id = batch["batch_id"]
    snap = None
    if snapshot:
        _, snap = stack.store.batch_and_item_snapshots(batch_id, item_id)
    return stack.store.record_completion_counted(batch_id, item_id, ids.batch_staging_table(batch_id), 5, 1,
                                                 ids.new_write_id(), batch, snap)


def test_a_batch_may_be_done_exactly_when_its_last_item_is_recorded(stack, day):
    batch_id, items, batch = _batch(stack, day, 120)
    assert len(batch["progress_shard_items"]) == 3
    *first, last = items
    for n, it in enumerate(first[:-1]):
        # both write paths count: the one-round-trip commit and the transaction
        assert _complete(stack, batch, it.item_id, snapshot=n % 2 == 0) == ("recorded", False)
    assert stack.store.record_failure_counted(batch_id, first[-1].item_id, "poison", dead_lettered=True) == \
        ("recorded", False), "a failure counts too"
    assert _complete(stack, batch, first[0].item_id, snapshot=True) == ("duplicate", False), \
        "a redelivery writes nothing and counts nothing"
    assert _complete(stack, batch, last.item_id, snapshot=True) == ("recorded", True)
    assert _complete(stack, batch, last.item_id, snapshot=False) == ("duplicate", True), \
        "a redelivery of the last completion still asks for the consolidation"
    assert stack.store.terminal_count(batch) == 120
    assert not stack.store.any_pending(batch_id)


def test_a_stale_read_of_the_item_falls_back_to_the_transaction_and_counts_once(stack, day):
    batch_id, items, batch = _batch(stack, day, 2)
    _, stale = stack.store.batch_and_item_snapshots(batch_id, items[0].item_id)
    assert stack.store.record_failure_counted(batch_id, items[0].item_id, "given up") == ("recorded", False)
    result = stack.store.record_completion_counted(batch_id, items[0].item_id, ids.batch_staging_table(batch_id),
                                                   5, 1, ids.new_write_id(), batch, stale)
    assert result[0] == "recorded", "the completion overrides the failure, decided on a fresh read"
    assert stack.store.get_item(batch_id, items[0].item_id)["status"] == "completed"
    assert stack.store.terminal_count(batch) == 2, "counted twice: early, never late"
    assert result[1] and stack.store.any_pending(batch_id), "early: the exact query still finds the pending item"
    assert _complete(stack, batch, items[1].item_id, snapshot=True) == ("recorded", True)


def test_a_batch_without_shards_is_always_checked_exactly(stack, day):
    """Batches created before the shards existed (no `progress_shard_items`) fall back to the exact query."""
    batch_id, items, _ = _batch(stack, day, 3)
    assert stack.store.may_be_done({"batch_id": batch_id}, items[0].item_id)
    stack.store.transition(batch_id, ["running"], {"status": "superseded"})


def test_item_snapshot_carries_the_update_time_a_write_is_conditional_on(stack, day):
    batch_id, items, _ = _batch(stack, day, 1)
    batch, snap = stack.store.batch_and_item_snapshots(batch_id, items[0].item_id)
    assert isinstance(snap, ItemSnapshot) and batch["batch_id"] == batch_id
    assert snap.data["status"] == "pending" and snap.update_time is not None
    assert stack.store.batch_and_item_snapshots(batch_id, "player_9999") == (batch, None)
    stack.store.transition(batch_id, ["running"], {"status": "superseded"})
