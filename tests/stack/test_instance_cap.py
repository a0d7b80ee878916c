"""Issue 18, item 1 on the real stack: a worker behind a Cloud Run-like cap (batchline/local/admission.py:
one request at a time, none queued, 429 beyond; each request holds its slot >= 0.5 s) fed by the real
Pub/Sub emulator's push with a 5-attempt dead-letter policy (production's minimum). A whole batch
published at once dead-letters healthy items (every one of their deliveries was a 429, the worker
never saw them); the same batch dispatched at the cap's pace (batchline/domain/pacing.py) is merged whole,
and so is the burst when the attempts are sized to the drain time (60 here: ~20 needed, ~0.5-1 s apart
locally).

The dispatch runs in this process (dispatch.start_batch, the coordinator's own code) with the pacing
settings a deployment gets from infra; everything after it runs in the stack's functions."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from google.cloud import pubsub_v1
from google.cloud.firestore_v1.base_query import FieldFilter

from batchline.adapters.clients import Clients
from batchline.domain import ids
from batchline.domain.messages import StartRequest
from batchline.domain.runs import Item
from batchline.domain.statuses import DISPATCHING
from batchline.flows import dispatch
from batchline.flows.ledger import compute
from batchline.layout import BATCHES
from batchline.local.admission import AdmissionGate
from batchline.local.provision import synthetic_context

ITEMS = 20
HOLD_S = 0.5  # each admitted delivery holds the one slot this long: 20 items drain in >= 10 s


@contextlib.contextmanager
def capped_worker(stack, attempts: int):
    """The work push subscription pointed at an admission gate in front of the worker, with `attempts`
    delivery attempts; restored afterwards."""
    sub = pubsub_v1.SubscriberClient()
    work = stack.clients.topology.topic("work").subscriptions[0].name
    name = sub.subscription_path(stack.clients.settings.project, work)
    original = sub.get_subscription(subscription=name)
    gate = AdmissionGate(stack.url("worker"), slots=1, queue_s=0.0, min_service_s=HOLD_S).start()
    capped = pubsub_v1.types.Subscription()
    capped._pb.CopyFrom(original._pb)
    capped.push_config.push_endpoint = gate.url + "/"
    capped.dead_letter_policy.max_delivery_attempts = attempts
    try:
        sub.delete_subscription(subscription=name)
        sub.create_subscription(request=capped)
        yield gate
    finally:
        sub.delete_subscription(subscription=name)
        sub.create_subscription(request=original)
        gate.stop()
        sub.close()


def run_batch(stack, day, clients: Clients):
    stack.seed(day, ITEMS)
    started = dispatch.start_batch(clients, StartRequest(game_date=day))
    batch = stack.wait(started.batch_id)
    return batch, compute(stack.clients, started.batch_id, 0.0)


def paced(stack, items_per_s: float) -> Clients:
    """Clients whose dispatch paces as a deployment's would (infra sets these from the caps)."""
    return Clients(replace(stack.clients.settings, dispatch_rate=items_per_s, dispatch_budget_s=120))


def test_a_whole_batch_at_once_dead_letters_healthy_items_at_the_cap(stack, day):
    with capped_worker(stack, attempts=5) as gate:
        batch, ledger = run_batch(stack, day, stack.clients)
    assert ledger.dead_lettered_items > 0, (ledger.verdict, dict(gate.refused))
    for item in ledger.dead_lettered_ids:  # healthy: it never reached the worker, all 5 were 429s
        assert gate.admitted[item] == 0 and gate.refused[item] >= 5, (item, gate.admitted[item], gate.refused[item])
    assert not ledger.missing_items and ledger.merged_items + ledger.dead_lettered_items == ITEMS
    print(f"burst at the cap, 5 attempts: {ledger.dead_lettered_items} of {ITEMS} dead-lettered, "
          f"{sum(gate.refused.values())} 429s")


def test_the_same_batch_paced_to_the_cap_is_merged_whole(stack, day):
    """Paced: ~20 s of dispatch, during which the lease is renewed and a second start is refused (409)."""
    leases: set = set()
    with capped_worker(stack, attempts=5) as gate, ThreadPoolExecutor(1) as pool:
        stack.seed(day, ITEMS)
        started = pool.submit(dispatch.start_batch, paced(stack, items_per_s=1.0), StartRequest(game_date=day))
        second = None
        while not started.done():
            batch = stack.store.get_batch(_batch_of_day(stack, day)) if _batch_of_day(stack, day) else None
            if batch and batch["status"] == DISPATCHING:
                leases.add(batch["dispatch_lease_until"])
                if second is None and sum(gate.admitted.values()) >= 3:
                    second = stack.start(day)
            time.sleep(0.5)
        batch = stack.wait(started.result().batch_id)
        ledger = compute(stack.clients, batch["batch_id"], 0.0)
    assert ledger.ok and ledger.dead_lettered_items == 0 and batch["merged_items"] == ITEMS, ledger.verdict
    assert second is not None and second.status_code == 409, "the paced start still held its lease"
    assert len(leases) >= 2, "the lease was renewed while the dispatch paced"
    print(f"paced at the cap, 5 attempts: 0 dead-lettered, {sum(gate.refused.values())} 429s")


def test_a_paced_dispatch_that_died_is_resumed_at_the_same_pace(stack, day):
    stack.seed(day, ITEMS)
    items = [Item(r["player_lookup"], r["game_id"]) for r in synthetic_context(day, ITEMS)]
    batch_id = ids.new_batch_id(day)
    stack.store.create_batch(batch_id, day, items, force=False, faults=None, dispatch_token="died-pacing")
    stack.store.batch_ref(batch_id).update({"dispatch_lease_until": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)})
    with capped_worker(stack, attempts=5):
        resumed = dispatch.resume_dispatch(paced(stack, items_per_s=1.0), batch_id, by="test")
        batch = stack.wait(batch_id)
    assert resumed is not None and resumed.resumed
    assert batch["merged_items"] == ITEMS and compute(stack.clients, batch_id, 0.0).dead_lettered_items == 0


def _batch_of_day(stack, day) -> str | None:
    docs = stack.store.fs.collection(BATCHES).where(filter=FieldFilter("game_date", "==", day.isoformat())).get()
    return docs[0].id if docs else None


def test_the_burst_is_carried_when_attempts_cover_the_drain(stack, day):
    # the emulator redelivers a refused push within ~0.5-1 s (no retry policy locally), so a 10 s drain
    # costs the last item ~20 attempts; 60 leave a 3x margin for a loaded machine
    with capped_worker(stack, attempts=60) as gate:
        batch, ledger = run_batch(stack, day, stack.clients)
    assert ledger.ok and ledger.dead_lettered_items == 0 and batch["merged_items"] == ITEMS, ledger.verdict
    assert sum(gate.refused.values()) > 0  # it was a burst at the cap: many 429s, none fatal
    print(f"burst at the cap, 60 attempts: 0 dead-lettered, {sum(gate.refused.values())} 429s, "
          f"at most {max(gate.refused.values())} for one item")
