"""A message-by-message simulation of push delivery into a capped function (issue 18, item 1): the model
behind bench/capacity.py and the check of infra/capacity.py's bound (tests/infra/test_capacity.py).

Pure and deterministic for a seed. What it models, and where each piece comes from (docs/infra.md,
"Capacity", cites the pages):
- the function: `slots` = instances x concurrency requests at once, each taking up to `item_s`; a
  request that finds every slot busy waits in Cloud Run's queue and is answered 429 once it has waited
  `queue_s` (a request that would start at exactly `queue_s` is already refused);
- Pub/Sub: every 429 is a failed delivery attempt; after `attempts` of them the message is dead-
  lettered; before that it is redelivered after min(max_backoff, min_backoff x 2^(n-1)) (Google says
  "exponential" and "best effort": `backoff_jitter` spreads each delay by +-that fraction);
- optionally Pub/Sub's push flow control, which Google describes only as adjusting the push rate to the
  rate of successes: modelled (an assumption, off by default) as a window of outstanding pushes that
  starts at `push_window`, grows by one per success and halves on each failure;
- the publisher: the whole batch at once, or paced at `publish_rate` messages per second.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Scenario:
    items: int
    slots: int
    item_s: float
    attempts: int
    min_backoff_s: float
    max_backoff_s: float = 600.0
    queue_s: float = 10.0
    publish_rate: float = 0.0  # messages/s; 0 = the whole batch at t = 0
    item_jitter: float = 0.0  # each request takes item_s x U(1 - j, 1)
    backoff_jitter: float = 0.0  # each retry delay x U(1 - j, 1 + j)
    push_window: int = 0  # 0 = no push flow control; else the window's starting size
    seed: int = 0


@dataclass
class Outcome:
    rejected_429: int = 0
    dead_letters: int = 0
    delivered: int = 0
    max_attempts_used: int = 0
    attempts_histogram: dict[int, int] = field(default_factory=dict)
    drained_s: float = 0.0


_DONE, _TIMEOUT, _READY = 1, 0, 2  # at one instant a wait that reached queue_s is refused first


def backoff(scenario: Scenario, nacks: int, rng: random.Random) -> float:
    base = min(scenario.max_backoff_s, scenario.min_backoff_s * 2 ** (nacks - 1))
    j = scenario.backoff_jitter
    return base * (rng.uniform(1 - j, 1 + j) if j else 1.0)


def simulate(sc: Scenario) -> Outcome:  # noqa: C901 - one event loop, kept in one place to read as a whole
    rng = random.Random(sc.seed)
    out = Outcome()
    events: list[tuple[float, int, int, int, int]] = []  # (time, kind, seq, item, request id)
    seq = 0

    def at(t: float, kind: int, item: int, req: int = -1) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, kind, seq, item, req))

    for i in range(sc.items):
        at(i / sc.publish_rate if sc.publish_rate > 0 else 0.0, _READY, i)
    nacks = [0] * sc.items
    free, queue = sc.slots, deque()  # queue of (request id, item)
    waiting: dict[int, int] = {}  # request id -> item, still queued at Cloud Run
    backlog: deque[int] = deque()  # deliverable messages Pub/Sub has not pushed yet
    window, outstanding, next_req = float(sc.push_window or 0), 0, 0

    def start(t: float, item: int) -> None:
        nonlocal free
        free -= 1
        took = sc.item_s * (rng.uniform(1 - sc.item_jitter, 1.0) if sc.item_jitter else 1.0)
        at(t + took, _DONE, item)

    def push(t: float) -> None:
        nonlocal outstanding, next_req
        while backlog and (not sc.push_window or outstanding < max(1, int(window))):
            item = backlog.popleft()
            outstanding += 1
            if free > 0:
                start(t, item)
            else:
                next_req += 1
                queue.append((next_req, item))
                waiting[next_req] = item
                at(t + sc.queue_s, _TIMEOUT, item, next_req)

    def finished(t: float, item: int, ok: bool) -> None:
        nonlocal outstanding, window
        outstanding -= 1
        attempt = nacks[item] + 1
        if ok:
            window += 1
            out.delivered += 1
        else:
            window = max(1.0, window / 2)
            out.rejected_429 += 1
            nacks[item] += 1
            if nacks[item] < sc.attempts:
                at(t + backoff(sc, nacks[item], rng), _READY, item)
                return
            out.dead_letters += 1
        out.attempts_histogram[attempt] = out.attempts_histogram.get(attempt, 0) + 1
        out.max_attempts_used = max(out.max_attempts_used, attempt)
        out.drained_s = max(out.drained_s, t)

    while events:
        t, kind, _, item, req = heapq.heappop(events)
        if kind == _READY:
            backlog.append(item)
        elif kind == _TIMEOUT:
            if waiting.pop(req, None) is not None:
                finished(t, item, ok=False)
        else:  # a request finished: its slot takes the oldest request still waiting
            free += 1
            finished(t, item, ok=True)
            while queue and free > 0:
                r, queued = queue.popleft()
                if waiting.pop(r, None) is not None:
                    start(t, queued)
        push(t)
    return out
