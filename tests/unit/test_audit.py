"""batchline.domain.audit.partition: every expected item in exactly one terminal state."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from batchline.domain.audit import STATES, partition

names = st.sets(st.sampled_from([f"p{i}" for i in range(30)]), max_size=30)


@given(names, names, names, names)
def test_each_expected_item_is_in_exactly_one_state(expected, merged, dead, incomplete):
    parts = partition(expected, merged, dead, incomplete)
    assert tuple(parts) == STATES
    flat = [i for state in STATES for i in parts[state]]
    assert sorted(flat) == sorted(expected) and len(flat) == len(set(flat))
    for i in expected:
        state = next(s for s in STATES if i in parts[s])
        assert state == ("incomplete" if i in incomplete else "recovered" if i in merged and i in dead
                         else "merged" if i in merged else "dead_lettered" if i in dead else "missing")


def test_examples():
    assert partition(["a", "b", "c", "d"], ["a", "b", "x"], ["b", "c"]) == {
        "merged": ["a"], "recovered": ["b"], "dead_lettered": ["c"], "incomplete": [], "missing": ["d"]}
    assert partition(["a", "b", "c", "d", "e"], ["a", "b", "e"], ["b", "c", "e"], ["c", "d", "e"]) == {
        "merged": ["a"], "recovered": ["b"], "dead_lettered": [], "incomplete": ["c", "d", "e"], "missing": []}, \
        "incomplete rows never count as merged, nor hide behind a dead letter"
    assert partition([], ["a"], ["b"]) == {s: [] for s in STATES}
