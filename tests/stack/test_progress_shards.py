"""The progress shards that gate the exact "anything pending?" query (batchline/progress.py), on the
real Firestore emulator: a batch is reported as possibly done exactly when every item was counted."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from batchline import ids, progress
from batchline.state import Item


def test_shards_cover_every_item_and_an_items_shard_is_stable():
    items = [f"player_{n:04d}" for n in range(450)]
    shards = progress.shard_count(len(items))
    assert shards == 9
    sizes = Counter(progress.shard_of(i, shards) for i in items)
    assert set(sizes) == set(range(shards)) and sum(sizes.values()) == 450
    assert max(sizes.values()) < 2 * progress.SHARD_ITEMS, "no shard takes a disproportionate share"
    assert [progress.shard_of(i, shards) for i in items] == [progress.shard_of(i, shards) for i in items]


@given(st.integers(min_value=0, max_value=100_000))
def test_there_is_one_shard_per_fifty_items_and_at_least_one(n):
    shards = progress.shard_count(n)
    assert shards >= 1 and (shards - 1) * progress.SHARD_ITEMS < max(n, 1) <= shards * progress.SHARD_ITEMS


def test_a_batch_may_be_done_exactly_when_every_item_was_counted(stack, day):
    store = stack.store
    items = [Item(f"player_{n:04d}", "g1") for n in range(120)]
    batch_id = ids.new_batch_id(day)
    store.create_batch(batch_id, day, items, force=True, faults=None, dispatch_token="t")
    batch = store.get_batch(batch_id)
    assert batch["progress_shards"] == 3
    last = items[-1].item_id
    for it in items[:-1]:
        assert not store.count_terminal(batch, it.item_id), f"{last} is not counted yet"
    assert not store.count_terminal(batch, items[0].item_id), "a redelivery counts again: still not the last"
    assert store.count_terminal(batch, last)
    assert store.count_terminal(batch, last), "once done, every later count says so"
    store.transition(batch_id, ["dispatching"], {"status": "superseded"})


def test_a_resumed_dispatch_keeps_what_was_counted(stack, day):
    store = stack.store
    items = [Item(f"player_{n:04d}", "g1") for n in range(60)]
    batch_id = ids.new_batch_id(day)
    store.create_batch(batch_id, day, items, force=True, faults=None, dispatch_token="t")
    batch = store.get_batch(batch_id)
    for it in items[:-1]:
        store.count_terminal(batch, it.item_id)
    store.create_items(batch_id, items)  # what resume_dispatch does with the whole schedule
    assert store.count_terminal(batch, items[-1].item_id), "the counts survived the second create"
    store.transition(batch_id, ["dispatching"], {"status": "superseded"})


def test_a_batch_without_shards_is_always_checked_exactly(stack, day):
    """Batches created before the shards existed (no `progress_shards`) fall back to the exact query."""
    batch_id = ids.new_batch_id(day)
    assert stack.store.count_terminal({"batch_id": batch_id}, "player_0000")
    assert stack.store.count_terminal({"batch_id": batch_id, "progress_shards": 2}, "player_0000"), \
        "a missing shard document answers 'may be done'"
