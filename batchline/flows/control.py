"""The coordinator's /control route: run an operator request once and answer it in Firestore.

The record (`control_requests/{sha256(request_id)}`, batchline/adapters/control_records.py) moves as
batchline/domain/control_lifecycle.py decides: accepted under a short lease of its own, renewed while the
action runs (lease.KeepAlive); then done, refused (with the reason, `refusal`) or, dead-lettered with
nobody holding it, failed. The record is written before the answer is 2xx, so a redelivered or
republished request is a no-op answered from it. Transient errors propagate (5xx): Pub/Sub redelivers,
and the record keeps the last error for the operator meanwhile.

A delivery whose holder died takes the request over once the holder's lease lapsed (a redelivery
waits that long rather than burn its attempts on 5xx). What the holder recorded on the way (the batch
a start registered and its dispatch token) lets the takeover resume that batch's dispatch at once
instead of starting another: a start that died mid-dispatch recovers in about CONTROL_LEASE.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid

from batchline.adapters.clients import Clients
from batchline.adapters.control_records import RequestStore  # noqa: F401 - this module's interface
from batchline.domain import control_requests as ctl
from batchline.domain import lifecycle as lc
from batchline.domain.control_lifecycle import (  # noqa: F401
    ACCEPTED,
    DONE,
    FAILED,
    FINAL,
    REFUSED,
    RENEW_EVERY,
    ClaimResult,
    DeadLetterResult,
)
from batchline.domain.errors import (
    BatchConflict,
    DispatchStillHeld,
    InvalidMessage,
    RepairAlreadyAttempted,
    StaleInputs,
    UnknownBatch,
    UnknownItem,
)
from batchline.domain.messages import PushEnvelope, ReconcileRequest, StartRequest, decode_data
from batchline.domain.statuses import DISPATCHING
from batchline.flows.dispatch import resume_dispatch, start_batch
from batchline.flows.leases import KeepAlive
from batchline.flows.reconcile import reconcile
from batchline.flows.repair import consolidate_again, start_repair
from batchline.flows.replay import replay_dead_letters
from batchline.logs import log_event


class Attempt:
    """This delivery's hold on the request: what an earlier attempt recorded, and a way to record more."""

    def __init__(self, store: RequestStore, request_id: str, token: str, previous: dict | None):
        self.store, self.request_id, self.token, self.previous = store, request_id, token, previous

    def note(self, **fields) -> None:
        self.store.note(self.request_id, self.token, fields)

    def earlier_batch(self, clients: Clients, game_date: dt.date) -> dict | None:
        """On a retry: the batch an earlier attempt started, as it recorded it (registered, or about to
        be), or, if it died before recording it, the date's active batch created after the request was
        accepted."""
        if self.previous is None:
            return None
        store = clients.batches
        for key in ("batch_id", "pending_batch_id"):
            batch = store.get_batch(self.previous[key]) if self.previous.get(key) else None
            if batch is not None:
                return batch
        active = store.active_batch_of(game_date)
        batch = store.get_batch(active) if active else None
        accepted = self.previous.get("accepted_at")
        return batch if batch and accepted and batch["created_at"] >= accepted else None


REFUSALS = (BatchConflict, RepairAlreadyAttempted, StaleInputs, InvalidMessage, UnknownItem)


def refusal(exc: Exception) -> dict:
    """The terminal answer to a request the action may not run, with the reason and its particulars
    (a retry would only be refused again, so none of these is a 5xx on the control path)."""
    result: dict = {"error": str(exc)}
    if isinstance(exc, BatchConflict):
        result.update(conflicting_batch_id=exc.batch_id, conflicting_status=exc.status)
    elif isinstance(exc, RepairAlreadyAttempted):
        result.update(repaired_by=exc.batch_id)
    elif isinstance(exc, StaleInputs):
        result.update(game_date=exc.game_date, newest_loaded_at=exc.newest_loaded_at,
                      max_age_hours=exc.max_age_hours, context_rows=exc.rows)
    return result


def handle_control(clients: Clients, envelope: PushEnvelope) -> dict:
    return execute(clients, ctl.parse_control(decode_data(envelope)))


def execute(clients: Clients, req) -> dict:
    store = clients.requests
    token = uuid.uuid4().hex
    verdict, previous = store.claim_waiting(req, token)
    if verdict in (ClaimResult.RECORDED, ClaimResult.REUSED):
        log_event("control_request", severity="ERROR" if verdict == ClaimResult.REUSED else "INFO",
                  request_id=req.request_id, action=req.action, status=previous["status"],
                  outcome="answered_from_record" if verdict == ClaimResult.RECORDED else "request_id_reused_not_run",
                  batch_id=previous.get("batch_id") or (previous.get("result") or {}).get("batch_id"))
        return {"request_id": req.request_id, "status": previous["status"], "result": previous.get("result"),
                "from_record": True}
    if verdict == ClaimResult.RETRY:
        log_event("control_request_taken_over", severity="WARNING", request_id=req.request_id, action=req.action,
                  attempts=int(previous.get("attempts") or 0) + 1, batch_id=previous.get("batch_id"),
                  previous_error=previous.get("error"))
    attempt = Attempt(store, req.request_id, token, previous if verdict == ClaimResult.RETRY else None)
    try:
        with KeepAlive(lambda: store.renew(req.request_id, token), RENEW_EVERY.total_seconds(),
                       f"control-{token[:8]}", "control_lease_lost", request_id=req.request_id):
            try:
                status, result = _ACTIONS[req.action](clients, req, attempt)
            except REFUSALS as exc:
                status, result = REFUSED, refusal(exc)
                if isinstance(exc, StaleInputs):  # the alert on stale inputs keys on this line, whichever path
                    log_event("start_refused_stale_inputs", severity="ERROR", handler="control", error=str(exc),
                              game_date=exc.game_date, newest_loaded_at=exc.newest_loaded_at,
                              max_age_hours=exc.max_age_hours, context_rows=exc.rows, request_id=req.request_id)
        answered = store.finish(req.request_id, token, status, result)
    except Exception as exc:  # noqa: BLE001 - kept on the record for the operator, then re-raised (5xx)
        store.release(req.request_id, token, f"{type(exc).__name__}: {exc} (Pub/Sub redelivers)")
        raise
    log_event("control_request", severity="WARNING" if status == REFUSED or not answered else "INFO",
              request_id=req.request_id, action=req.action, status=status, batch_id=result.get("batch_id"),
              result=result, outcome="answered" if answered else "another_delivery_took_over_and_answers")
    return {"request_id": req.request_id, "status": status, "result": result, "from_record": False}


def handle_control_dead_letter(clients: Clients, req, attempts: str) -> str:
    store = clients.requests
    outcome = store.dead_lettered(req, f"control request dead-lettered after {attempts} delivery attempts")
    record = store.get(req.request_id) or {}
    recorded = outcome == DeadLetterResult.RECORDED
    log_event("control_request", severity="ERROR" if recorded else "WARNING", request_id=req.request_id,
              action=req.action, status=record.get("status"), delivery_attempts=attempts,
              batch_id=record.get("batch_id"), error=record.get("error"),
              outcome="failed" if recorded else "dead_letter_ignored_answered_or_held")
    return outcome


# -- the actions: (status, result) --------------------------------------------------------------
def _start(clients: Clients, req: ctl.StartControl, attempt: Attempt) -> tuple[str, dict]:
    earlier = attempt.earlier_batch(clients, req.game_date)
    if earlier:
        return DONE, {"batch_id": earlier["batch_id"], "game_date": req.game_date.isoformat(),
                      "expected_items": earlier["expected_items"], "started_by_earlier_attempt": True,
                      "resumed": _resume_earlier(clients, earlier, attempt)}
    r = start_batch(clients, StartRequest(game_date=req.game_date, force=req.force,
                                          accept_stale_inputs=req.accept_stale_inputs),
                    on_registering=lambda b, token: attempt.note(pending_batch_id=b, dispatch_token=token),
                    on_registered=lambda batch_id: attempt.note(batch_id=batch_id))
    return DONE, {"batch_id": r.batch_id, "game_date": r.game_date.isoformat(), "expected_items": r.expected_items,
                  "superseded": r.superseded, "invalid_context_rows": r.invalid_context_rows, "resumed": r.resumed}


def _resume_earlier(clients: Clients, batch: dict, attempt: Attempt) -> bool:
    """Finish the dispatch of the batch an earlier attempt of this request started, if it died
    mid-dispatch: at once when it recorded its dispatch token (its holder is known dead: this delivery
    took the request over from it), else once the dispatch lease lapses. True when resumed here."""
    if batch["status"] != DISPATCHING:
        return False
    previous = attempt.previous or {}
    mine = batch["batch_id"] in (previous.get("batch_id"), previous.get("pending_batch_id"))
    dead = previous.get("dispatch_token") if mine else None
    deadline = time.monotonic() + lc.DISPATCH_LEASE.total_seconds() + 15
    while True:
        if resume_dispatch(clients, batch["batch_id"], by="control", dead_holder=dead) is not None:
            return True
        if (clients.batches.get_batch(batch["batch_id"]) or {}).get("status") != DISPATCHING:
            return False  # another resumer finished it, or it failed loudly (its status says why)
        if time.monotonic() > deadline:
            raise DispatchStillHeld(f"batch {batch['batch_id']} is still dispatched by a live holder")
        time.sleep(1.0)


def _consolidate(clients: Clients, req: ctl.ConsolidateControl, attempt: Attempt) -> tuple[str, dict]:
    ok, result = consolidate_again(clients, req.batch_id, f"control:{ctl.request_doc_id(req.request_id)[:16]}")
    return (DONE if ok else REFUSED), result


def _reconcile(clients: Clients, req: ctl.ReconcileControl, attempt: Attempt) -> tuple[str, dict]:
    r = reconcile(clients, ReconcileRequest(game_date=req.game_date, redispatch_max=25 if req.repair else 0))
    result = r.as_dict()
    if not req.repair:
        result["action"] = "reported" if r.incomplete_items else "none"
    result["batch_id"] = r.redispatched_batch_id
    return DONE, result


def _redispatch(clients: Clients, req: ctl.RedispatchControl, attempt: Attempt) -> tuple[str, dict]:
    store = clients.batches
    batch = store.get_batch(req.batch_id)
    if batch is None:
        raise UnknownBatch(f"no batch {req.batch_id}")
    unknown = sorted(set(req.items) - {i["item_id"] for i in store.items(req.batch_id)})
    if unknown:
        raise UnknownItem(f"batch {req.batch_id} has no items {unknown[:20]}")
    game_date = dt.date.fromisoformat(batch["game_date"])
    earlier = attempt.earlier_batch(clients, game_date)
    if earlier and sorted(earlier.get("only_items") or []) == sorted(req.items):
        return DONE, {"batch_id": earlier["batch_id"], "from_batch": req.batch_id, "started_by_earlier_attempt": True}
    r = start_repair(clients, game_date, {req.batch_id: list(req.items)})
    return DONE, {"batch_id": r.batch_id, "from_batch": req.batch_id, "game_date": batch["game_date"],
                  "items": list(req.items), "expected_items": r.expected_items}


def _replay(clients: Clients, req: ctl.ReplayControl, attempt: Attempt) -> tuple[str, dict]:
    result = replay_dead_letters(clients, req.source, req.batch_id, req.limit,
                                 f"control:{ctl.request_doc_id(req.request_id)[:16]}")
    return DONE, result


_ACTIONS = {"start": _start, "consolidate": _consolidate, "reconcile": _reconcile, "redispatch": _redispatch,
            "replay_dead_letters": _replay}
