"""Starting a batch: read the schedule, register the batch, fan out one work message per item.

The start holds a dispatch lease while it publishes (lifecycle.decide_dispatch_lease). If it dies
mid-dispatch, the batch is not left blocking its date: the next start of the date, or the stall
check, takes the lapsed lease and resumes the dispatch (docs/failures.md F4). A publish that fails
while the starter is alive fails the batch at once, loudly, so a retried start begins afresh.
Publishes are paced to what the worker's cap absorbs (batchline/domain/pacing.py, issue 18), within a time
budget that keeps the start inside its request timeout.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from batchline.adapters import queries, staging
from batchline.adapters.clients import Clients
from batchline.adapters.freshness import check_fresh
from batchline.domain import faults as faults_mod
from batchline.domain import ids, pacing
from batchline.domain.errors import BatchConflict, DispatchLost, InvalidMessage
from batchline.domain.messages import StartRequest, WorkMessage, encode
from batchline.domain.runs import Item
from batchline.domain.statuses import DISPATCH_FAILED, DISPATCHING, PENDING
from batchline.flows.consolidation_request import request_consolidation_if_done
from batchline.logs import log_event

PUBLISH_CHUNK = 500  # work messages published between two renewals of the dispatch lease (at most)


@dataclass(frozen=True)
class StartResult:
    batch_id: str
    game_date: dt.date
    expected_items: int
    superseded: str | None
    invalid_context_rows: int
    resumed: bool = False


def expected_items(clients: Clients, game_date: dt.date,
                   only: list[str] | None = None) -> tuple[list[Item], list[dict]]:
    """The schedule for a date from the context table: valid items, and rows rejected with why."""
    items: dict[str, Item] = {}
    rejected: list[dict] = []
    for player, game in queries.schedule_rows(clients.bq, clients.settings, game_date):
        try:
            item = Item(ids.validate_item_id(player), ids.validate_game_id(game))
        except ValueError as exc:
            rejected.append({"player_lookup": str(player)[:100], "game_id": str(game)[:100], "reason": str(exc)})
            continue
        if item.item_id in items:
            rejected.append({"player_lookup": player, "game_id": game,
                             "reason": f"duplicate player; kept game {items[item.item_id].game_id}"})
            continue
        items[item.item_id] = item
    if only is not None:
        wanted = set(only)
        items = {k: v for k, v in items.items() if k in wanted}
    return list(items.values()), rejected


def _parse_faults(s, spec: str | None) -> faults_mod.FaultSpec:
    """A start's fault spec, refused where faults are disabled (every deployment)."""
    if not spec:
        return faults_mod.FaultSpec()
    if not s.allow_faults:
        raise InvalidMessage("fault injection is disabled on this deployment")
    try:
        return faults_mod.parse(spec)
    except ValueError as exc:
        raise InvalidMessage(str(exc)) from exc


def no_context_message(s, game_date: dt.date, scheduled: bool) -> str:
    """Why a start of `game_date` has nothing to run, and how to give it something: on the local stack
    (its BigQuery is the emulator) the seeding command; on a deployment, the loader's contract."""
    if scheduled:  # a repair whose items are no longer scheduled for the date
        return f"none of the requested items is in the context rows for {game_date}; nothing to run"
    head = f"no valid context rows for {game_date} in {s.context_table_id}; nothing to run"
    if s.bigquery_emulator_host:
        return (f"{head}. On the local stack, load them with `batchline local seed {game_date}` "
                f"(--players N, --seed S), then start again")
    return (f"{head}. The context table is filled by your upstream loader: one row per scheduled player "
            f"(game_date, player_lookup, game_id) stamped with loaded_at, the load time a start checks for "
            f"freshness; load the date, then start again (docs/deploy.md)")


def start_batch(clients: Clients, req: StartRequest, only_items: list[str] | None = None, *,
                repeat_repair: bool = False, on_registering: Callable[[str, str], None] | None = None,
                on_registered: Callable[[str], None] | None = None) -> StartResult:
    """Register and dispatch a batch of the date: all of it, or `only_items` (a repair, refused with
    RepairAlreadyAttempted when those items were all repaired once since the date's last full run,
    unless `repeat_repair`). `on_registering(batch_id, dispatch_token)` runs before the batch is
    registered, `on_registered(batch_id)` once it exists and before anything is published: the control
    path records them, so a takeover of a start that died can resume its dispatch at once."""
    s = clients.settings
    game_date = req.game_date or s.today()
    injected = _parse_faults(s, req.faults)
    schedule, rejected = expected_items(clients, game_date)
    items = schedule if only_items is None else [i for i in schedule if i.item_id in set(only_items)]
    if not items:
        raise InvalidMessage(no_context_message(s, game_date, bool(schedule)))
    try:
        faults_mod.check_items(injected, [i.item_id for i in items], f"the batch of {game_date}")
    except ValueError as exc:
        raise InvalidMessage(str(exc)) from exc
    if only_items is None and not req.accept_stale_inputs:
        # A repair (only_items) re-runs items of a date whose inputs a start accepted already.
        check_fresh(clients, game_date)
    batch_id = ids.new_batch_id(game_date)
    store = clients.batches
    token = uuid.uuid4().hex
    superseded = None
    if on_registering is not None:
        on_registering(batch_id, token)
    for tries_left in (1, 0):
        try:
            superseded = store.create_batch(
                batch_id, game_date, items, force=req.force, faults=req.faults, dispatch_token=token,
                only_items=None if only_items is None else [i.item_id for i in items],
                scheduled_items=None if only_items is None else [i.item_id for i in schedule],
                repeat_repair=repeat_repair)
            break
        except BatchConflict as exc:
            # The date's batch is still dispatching: if its starter died, this start finishes its
            # dispatch (and answers for that batch); if resuming failed it loudly, start afresh.
            if exc.status != DISPATCHING or only_items is not None or not tries_left:
                raise
            resumed = resume_dispatch(clients, exc.batch_id, by="start")
            if resumed is not None:
                return resumed
            if (store.get_batch(exc.batch_id) or {}).get("status") == DISPATCHING:
                raise
    log_event("batch_created", batch_id=batch_id, game_date=game_date, expected_items=len(items),
              superseded=superseded, force=req.force)
    if on_registered is not None:
        on_registered(batch_id)
    if rejected:
        store.set_batch_fields(batch_id, {"invalid_context_rows": rejected[:100],
                                          "invalid_context_row_count": len(rejected)})
        log_event("context_rows_rejected", severity="ERROR", batch_id=batch_id, count=len(rejected),
                  examples=rejected[:5])
    dispatch(clients, batch_id, game_date, items, token)
    return StartResult(batch_id, game_date, len(items), superseded, len(rejected))


def dispatch(clients: Clients, batch_id: str, game_date: dt.date, items: list[Item], token: str) -> None:
    """Create the batch staging table, publish one work message per item at the worker cap's pace
    (batchline/domain/pacing.py), renewing the dispatch lease before every chunk and every 15 s; then running."""
    store = clients.batches
    steps = _paced_plan(clients.settings, batch_id, len(items))
    try:
        staging.create_batch_table(clients.bq, clients.settings, batch_id)
        began = time.monotonic()
        for step in steps:
            wait = step.at_s - (time.monotonic() - began)
            if wait > 0:
                time.sleep(wait)
            if step.renew and not store.take_dispatch(batch_id, token):
                raise DispatchLost(f"batch {batch_id}: another dispatcher took over")
            # every publish accepted before the next step, and before any 2xx (F1)
            clients.publish_all("work", [
                (encode(WorkMessage(batch_id=batch_id, game_date=game_date, item_id=i.item_id, game_id=i.game_id)),
                 {"batch_id": batch_id, "item_id": i.item_id})
                for i in items[step.start:step.end]
            ], timeout_s=60)
    except DispatchLost:
        log_event("dispatch_lost", severity="WARNING", batch_id=batch_id)
        raise
    except Exception as exc:
        failed = store.dispatch_failed(batch_id, token, str(exc))
        log_event("dispatch_failed" if failed else "dispatch_lost", severity="ERROR", batch_id=batch_id,
                  error=str(exc))
        raise
    if store.mark_running(batch_id, token):
        log_event("batch_dispatched", batch_id=batch_id, expected_items=len(items))
    request_consolidation_if_done(clients, batch_id, claimant=f"start:{batch_id}")


def _paced_plan(settings, batch_id: str, n_items: int) -> list[pacing.Step]:
    """The publish plan (batchline/domain/pacing.py), logged when it paces: at the worker cap's rate, or faster
    when the batch would not fit the start's time budget at that rate (then the delivery policy carries
    the excess, infra/capacity.py)."""
    rate = pacing.effective_rate(n_items, settings.dispatch_rate, settings.dispatch_budget_s)
    if rate:
        compressed = rate > settings.dispatch_rate
        log_event("dispatch_pace_compressed" if compressed else "dispatch_paced",
                  severity="WARNING" if compressed else "INFO", batch_id=batch_id, items=n_items,
                  rate_per_s=round(rate, 3), configured_rate_per_s=settings.dispatch_rate,
                  budget_s=settings.dispatch_budget_s, expected_s=round(n_items / rate, 1))
    return pacing.plan(n_items, settings.dispatch_rate, settings.dispatch_budget_s, PUBLISH_CHUNK)


def resume_dispatch(clients: Clients, batch_id: str, *, by: str, dead_holder: str | None = None) -> StartResult | None:
    """Finish the dispatch of a batch whose starter died (its dispatch lease lapsed, or its holder is
    `dead_holder`, known dead); None while a live starter holds it. Item documents the starter did not
    write are written now, from the schedule; if the schedule no longer matches the batch, the batch
    fails loudly instead. `by` names the resumer in the log line (start, control, stall-check)."""
    store = clients.batches
    token = uuid.uuid4().hex
    if not store.take_dispatch(batch_id, token, dead_holder):
        return None
    batch = store.get_batch(batch_id) or {}
    game_date = dt.date.fromisoformat(batch["game_date"])
    expected = int(batch["expected_items"])
    docs = store.items(batch_id)
    log_event("dispatch_resumed", severity="WARNING", batch_id=batch_id, items_recorded=len(docs),
              expected_items=expected, by=by)
    if len(docs) < expected:
        wanted, _ = expected_items(clients, game_date, batch.get("only_items"))
        if len(wanted) != expected:
            error = (f"dispatch interrupted after {len(docs)} of {expected} items were recorded, and the "
                     f"schedule now has {len(wanted)}: start the date again")
            store.transition(batch_id, [DISPATCHING], {"status": DISPATCH_FAILED, "error": error})
            log_event("dispatch_failed", severity="ERROR", batch_id=batch_id, error=error)
            return None
        store.create_items(batch_id, wanted)
        docs = store.items(batch_id)
    pending = [Item(d["item_id"], d["game_id"]) for d in docs if d["status"] == PENDING]
    dispatch(clients, batch_id, game_date, pending, token)
    return StartResult(batch_id, game_date, expected, None, int(batch.get("invalid_context_row_count") or 0),
                       resumed=True)
