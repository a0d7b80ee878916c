"""Whether a stack's caps and delivery policy carry its largest batch without dead-lettering healthy
messages (issue 18, item 1). Pure: config validation, the `delivery-fits-caps` rule, the bench model and
the tests use it; docs/infra.md ("Capacity") cites the Google pages behind each number.

The hazard: at max instances x concurrency, Cloud Run holds a further request for a while (at least
10 s) and then answers 429; Pub/Sub push counts that as a failed delivery attempt, and after
`max_delivery_attempts` it dead-letters a message the function never saw.

The bound (deliberately pessimistic): the whole burst arrives at once, every retry of the unserved
arrives together again (no jitter), the retry delay is only the minimum backoff, and Pub/Sub's own push
flow control is ignored. Then each attempt is a round in which a cap of `slots` starts, per slot, only
the requests that reach it within the queue time:

    served(busy) = slots x ceil((queue_s - busy) / item_s)     (0 if busy >= queue_s)

with busy = 0 in the first round and busy = max(0, item_s - min_backoff_s) after (a request started
late in one round is still running when the next round arrives a minimum backoff after the 429s). The
burst is carried if the rounds its attempts buy serve it all. `infra/delivery_sim.py` simulates the same
timeline message by message, and tests/infra/test_capacity.py checks that whatever this bound accepts
the simulation delivers with no dead letter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infra.shared import topology

# Cloud Run holds a request at the cap for at least this long before it answers 429 (longer when the
# instances start slowly: 3.5 x the average start-up time); the shorter the hold, the more 429s, so the
# bound takes the minimum.
QUEUE_S = 10.0
# Coordinator requests that can hold a slot for minutes, each at most once at a time per batch: a
# consolidation (MERGE), a start or resumed dispatch (paced), a stall check, an operator request.
RESERVED_SLOTS = {topology.COORDINATOR: 4, topology.WORKER: 0}
# Messages of one topic that can reach its subscription at once: one per item for work and completions
# (a whole batch redispatched, replayed or released after an outage); consolidation and control carry a
# handful per batch.
SMALL_BURST = 10
BATCH_SIZED = ("work", "completions")


def burst_of(topic_key: str, largest_batch_items: int) -> int:
    return largest_batch_items if topic_key in BATCH_SIZED else SMALL_BURST


def slots_of(function: str, max_instances: int, concurrency: int) -> int:
    """Requests the function's cap serves at once for a burst (long-running requests set aside)."""
    return max(0, max_instances * concurrency - RESERVED_SLOTS.get(function, 0))


def served_per_round(slots: int, item_s: float, busy_s: float, queue_s: float = QUEUE_S) -> int:
    """Requests of one round the cap starts before they have waited `queue_s`, each slot still busy
    for `busy_s` when the round arrives."""
    if busy_s >= queue_s or slots <= 0:
        return 0
    return slots * math.ceil((queue_s - busy_s) / item_s)


def attempts_needed(burst: int, slots: int, item_s: float, min_backoff_s: float,
                    queue_s: float = QUEUE_S) -> int | None:
    """Delivery attempts the last message of a burst may need under the bound; None: never carried."""
    first = served_per_round(slots, item_s, 0.0, queue_s)
    if burst <= first:
        return 1
    later = served_per_round(slots, item_s, max(0.0, item_s - min_backoff_s), queue_s)
    if later == 0:
        return None
    return 1 + math.ceil((burst - first) / later)


@dataclass(frozen=True)
class Verdict:
    burst: int
    slots: int
    item_s: float
    attempts: int
    min_backoff_s: float
    needed: int | None

    @property
    def ok(self) -> bool:
        return self.needed is not None and self.needed <= self.attempts

    def problem(self) -> str | None:
        if self.ok:
            return None
        need = "no number of attempts" if self.needed is None else f"{self.needed} attempts"
        return (f"a burst of {self.burst} messages at {self.slots} slots x {self.item_s:g} s per message needs {need}, "
                f"{self.attempts} allowed (minimum backoff {self.min_backoff_s:g} s; Cloud Run answers 429 after "
                f"holding a request {QUEUE_S:g} s at the cap, and each 429 is a delivery attempt)")


def verdict(burst: int, slots: int, item_s: float, attempts: int, min_backoff_s: float) -> Verdict:
    return Verdict(burst, slots, item_s, attempts, min_backoff_s, attempts_needed(burst, slots, item_s, min_backoff_s))


def dispatch_rate(worker_slots: int, worker_item_s: float) -> float:
    """Work messages per second the worker's cap absorbs: what a dispatch is paced to."""
    return worker_slots / worker_item_s


def dispatch_budget_s(coordinator_timeout_s: int) -> int:
    """Seconds a paced dispatch may take: 60% of the coordinator's timeout, the rest left for reading the
    schedule, writing the item documents and recording the result. A larger batch is published faster
    than the cap absorbs (the delivery policy carries the excess), never past the request's timeout."""
    return int(coordinator_timeout_s * 0.6)
