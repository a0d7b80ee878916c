"""batchline/domain/pacing.py: the publish plan covers every item once, in order; a paced plan ends within its
budget and never publishes faster than needed; the dispatch lease is renewed before every chunk and at
least every RENEW_S seconds of plan time (the lease lapses after 60 s); unpaced is the old behaviour."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from batchline.domain.pacing import RENEW_S, effective_rate, plan


@given(n=st.integers(0, 3000), rate=st.floats(0, 500), budget=st.integers(0, 600), chunk=st.integers(1, 600))
def test_the_plan_covers_every_item_once_renewing_the_lease_in_time(n, rate, budget, chunk):
    steps = plan(n, rate, budget, chunk)
    assert [i for s in steps for i in range(s.start, s.end)] == list(range(n))
    assert all(a.at_s <= b.at_s for a, b in zip(steps, steps[1:], strict=False))
    assert all(s.renew for s in steps if s.start % chunk == 0)
    assert all(s.end - s.start <= chunk and (s.end - 1) // chunk == s.start // chunk for s in steps)
    renewals = [s.at_s for s in steps if s.renew] + ([steps[-1].at_s] if steps else [])
    assert all(b - a <= 2 * RENEW_S + 1e-9 for a, b in zip(renewals, renewals[1:], strict=False))
    r = effective_rate(n, rate, budget)
    if r:
        assert steps[-1].at_s <= budget + 1e-9
        assert r >= rate and (r == rate or r * budget <= max(n, budget / RENEW_S) + 1e-6)
    else:
        assert all(s.at_s == 0 for s in steps)


def test_unpaced_is_one_step_per_chunk_at_once():
    assert [(s.start, s.end, s.at_s, s.renew) for s in plan(1200, 0, 324, 500)] == [
        (0, 500, 0.0, True), (500, 1000, 0.0, True), (1000, 1200, 0.0, True)]
    assert plan(1200, 50, 0, 500) == plan(1200, 0, 324, 500)  # no budget: never paced


def test_a_batch_too_large_for_the_budget_is_published_faster():
    assert effective_rate(500, 6, 324) == 6  # the emergency cap: 500 items in 83 s
    assert effective_rate(5000, 6, 324) == 5000 / 324  # would take 833 s: compressed to the budget
    steps = plan(500, 6, 324, 500)
    assert steps[-1].at_s == 498 / 6 and {s.end - s.start for s in steps} == {6, 2}
