"""When a dispatch publishes each work message (issue 18, item 1). Pure: dispatch.py follows the plan.

Why pace: at max instances x concurrency Cloud Run holds a further request for ~10 s and then answers
429, and Pub/Sub counts every 429 as a failed delivery attempt; a whole batch published at once can
exhaust the attempts of items that were never even seen. Publishing at the rate the worker's cap
absorbs (its slots / seconds per item, which infra sets as BATCHLINE_DISPATCH_RATE) makes no queue at
the cap. The publisher side cannot do it alone: the start request has a timeout, so a batch too large to
publish at that rate within BATCHLINE_DISPATCH_BUDGET_S is published faster, and the delivery policy
must carry the excess (infra/capacity.py, the `delivery-fits-caps` rule), as it must carry every burst
that does not come through a dispatch (a redispatch, a replay, a backlog after an outage).

The plan keeps the dispatch lease semantics: the lease is renewed before every PUBLISH_CHUNK messages
(as before pacing) and at least every RENEW_S seconds (the lease lapses after 60 s), so a paced dispatch
is never mistaken for a dead one, and one that died is resumed with the same plan for what is left.
"""

from __future__ import annotations

from dataclasses import dataclass

TICK_S = 1.0  # messages of one tick are published together, then the dispatch sleeps to the next
RENEW_S = 15.0  # a quarter of the 60 s dispatch lease, like every other lease holder


@dataclass(frozen=True)
class Step:
    start: int  # items[start:end] are published together
    end: int
    at_s: float  # not before this many seconds after the dispatch began
    renew: bool  # renew (or take) the dispatch lease first


def effective_rate(n_items: int, rate: float, budget_s: float) -> float:
    """Messages per second: the configured rate, raised so that n items take at most the budget (and to
    one per RENEW_S, so no sleep outlasts a renewal); 0 = all at once (no rate, or no budget)."""
    if rate <= 0 or budget_s <= 0 or n_items <= 0:
        return 0.0
    return max(rate, n_items / budget_s, 1 / RENEW_S)


def plan(n_items: int, rate: float, budget_s: float, chunk: int) -> list[Step]:
    """The publish steps of a dispatch of n items. Unpaced: one step per chunk, all at 0 s."""
    r = effective_rate(n_items, rate, budget_s)
    group = chunk if r == 0 else max(1, min(chunk, round(r * TICK_S)))
    steps: list[Step] = []
    last_renew = 0.0
    for chunk_start in range(0, n_items, chunk):
        for start in range(chunk_start, min(chunk_start + chunk, n_items), group):
            at = start / r if r else 0.0
            renew = start == chunk_start or at - last_renew >= RENEW_S
            if renew:
                last_renew = at
            steps.append(Step(start, min(start + group, chunk_start + chunk, n_items), at, renew))
    return steps
