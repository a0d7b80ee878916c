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


class _Simulation:
    """One run's state: the event heap, Cloud Run's slots and queue, Pub/Sub's backlog and window."""

    def __init__(self, sc: Scenario) -> None:
        self.sc, self.rng, self.out = sc, random.Random(sc.seed), Outcome()
        self.events: list[tuple[float, int, int, int, int]] = []  # (time, kind, seq, item, request id)
        self.seq = 0
        self.nacks = [0] * sc.items
        self.free, self.queue = sc.slots, deque()  # queue of (request id, item)
        self.waiting: dict[int, int] = {}  # request id -> item, still queued at Cloud Run
        self.backlog: deque[int] = deque()  # deliverable messages Pub/Sub has not pushed yet
        self.window, self.outstanding, self.next_req = float(sc.push_window or 0), 0, 0

    def at(self, t: float, kind: int, item: int, req: int = -1) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, item, req))

    def start(self, t: float, item: int) -> None:
        sc = self.sc
        self.free -= 1
        took = sc.item_s * (self.rng.uniform(1 - sc.item_jitter, 1.0) if sc.item_jitter else 1.0)
        self.at(t + took, _DONE, item)

    def push(self, t: float) -> None:
        """Pub/Sub pushes its backlog (within its window, if modelled): a free slot starts the request,
        otherwise it waits in Cloud Run's queue until it is started or refused."""
        sc = self.sc
        while self.backlog and (not sc.push_window or self.outstanding < max(1, int(self.window))):
            item = self.backlog.popleft()
            self.outstanding += 1
            if self.free > 0:
                self.start(t, item)
            else:
                self.next_req += 1
                self.queue.append((self.next_req, item))
                self.waiting[self.next_req] = item
                self.at(t + sc.queue_s, _TIMEOUT, item, self.next_req)

    def finished(self, t: float, item: int, ok: bool) -> None:
        """A delivery attempt ended: delivered, or refused and redelivered after a backoff, or dead-lettered."""
        out = self.out
        self.outstanding -= 1
        attempt = self.nacks[item] + 1
        if ok:
            self.window += 1
            out.delivered += 1
        else:
            self.window = max(1.0, self.window / 2)
            out.rejected_429 += 1
            self.nacks[item] += 1
            if self.nacks[item] < self.sc.attempts:
                self.at(t + backoff(self.sc, self.nacks[item], self.rng), _READY, item)
                return
            out.dead_letters += 1
        out.attempts_histogram[attempt] = out.attempts_histogram.get(attempt, 0) + 1
        out.max_attempts_used = max(out.max_attempts_used, attempt)
        out.drained_s = max(out.drained_s, t)

    def run(self) -> Outcome:
        sc = self.sc
        for i in range(sc.items):
            self.at(i / sc.publish_rate if sc.publish_rate > 0 else 0.0, _READY, i)
        while self.events:
            t, kind, _, item, req = heapq.heappop(self.events)
            if kind == _READY:
                self.backlog.append(item)
            elif kind == _TIMEOUT:
                if self.waiting.pop(req, None) is not None:
                    self.finished(t, item, ok=False)
            else:  # a request finished: its slot takes the oldest request still waiting
                self.free += 1
                self.finished(t, item, ok=True)
                while self.queue and self.free > 0:
                    r, queued = self.queue.popleft()
                    if self.waiting.pop(r, None) is not None:
                        self.start(t, queued)
            self.push(t)
        return self.out


def simulate(sc: Scenario) -> Outcome:
    """Every message's delivery attempts, event by event, until the last is delivered or dead-lettered."""
    return _Simulation(sc).run()
