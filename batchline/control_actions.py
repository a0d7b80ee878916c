"""The coordinator's /control route: run an operator request once and answer it in Firestore.

    control_requests/{sha256(request_id)}   request, status, result, error, attempts, timestamps

accepted  a delivery holds the request (a lease of LEASE); a crashed holder's lease lapses
done      the action ran; `result` says what it did (the batch started, the reconciliation, ...)
refused   the action may not run (a batch of the date still active -> the conflicting batch; stale
          inputs -> their load time; an unknown batch; nothing scheduled): a terminal answer with the
          reason (`refusal`), 2xx, not a retry loop
failed    the request was dead-lettered (it kept failing transiently); a replay runs it again

The record is written before the answer is 2xx, so a redelivered or republished request is a no-op
answered from it. Transient errors propagate (5xx): Pub/Sub redelivers, and the record keeps the last
error for the operator meanwhile.
"""

from __future__ import annotations

import datetime as dt
import uuid

from google.cloud import firestore

from batchline import control as ctl
from batchline.clients import Clients
from batchline.dispatch import start_batch
from batchline.freshness import StaleInputs
from batchline.logs import log_event
from batchline.messages import InvalidMessage, PushEnvelope, ReconcileRequest, StartRequest, decode_data
from batchline.reconcile import reconcile
from batchline.repair import consolidate_again, start_repair
from batchline.replay import replay_dead_letters
from batchline.state import BatchConflict, BatchStore, RepairAlreadyAttempted, UnknownItem, now

ACCEPTED, DONE, REFUSED, FAILED = "accepted", "done", "refused", "failed"
FINAL = (DONE, REFUSED)
LEASE = dt.timedelta(minutes=10)  # the control subscription's ack deadline


class ControlBusy(RuntimeError):
    """Another delivery of the same request is running it; answered 5xx, so this one comes back."""


class RequestStore:
    def __init__(self, fs: firestore.Client):
        self.fs = fs

    def ref(self, request_id: str):
        return self.fs.collection(ctl.CONTROL_REQUESTS).document(ctl.request_doc_id(request_id))

    def get(self, request_id: str) -> dict | None:
        snap = self.ref(request_id).get()
        return snap.to_dict() if snap.exists else None

    def claim(self, req, token: str) -> tuple[str, dict | None]:
        """('run', None) first time; ('retry', previous record) when a failed or lapsed attempt is
        taken over; ('recorded', record) when the request already has its answer; ('reused', record)
        when the id names a different request (nothing runs; the record stays the first request's)."""
        ref, body = self.ref(req.request_id), req.model_dump(mode="json")

        @firestore.transactional
        def txn_fn(txn) -> tuple[str, dict | None]:
            snap = ref.get(transaction=txn)
            t = now()
            if not snap.exists:
                txn.create(ref, {"request_id": req.request_id, "action": req.action, "request": body,
                                 "status": ACCEPTED, "token": token, "attempts": 1, "accepted_at": t,
                                 "lease_until": t + LEASE, "result": None, "error": None, "updated_at": t})
                return "run", None
            doc = snap.to_dict()
            if doc.get("request") != body:
                return "reused", doc
            if doc["status"] in FINAL:
                return "recorded", doc
            if doc["status"] == ACCEPTED and doc.get("lease_until") and doc["lease_until"] > t:
                raise ControlBusy(f"request {req.request_id} is being run by another delivery")
            txn.update(ref, {"status": ACCEPTED, "token": token, "attempts": int(doc.get("attempts") or 0) + 1,
                             "lease_until": t + LEASE, "updated_at": t})
            return "retry", doc

        return txn_fn(self.fs.transaction())

    def finish(self, request_id: str, status: str, result: dict) -> None:
        self.ref(request_id).update({"status": status, "result": result, "error": result.get("error"),
                                     "lease_until": None, "finished_at": now(), "updated_at": now()})

    def release(self, request_id: str, token: str, error: str) -> None:
        """A delivery that failed transiently lets the next one in at once, leaving its error."""
        ref = self.ref(request_id)

        @firestore.transactional
        def txn_fn(txn) -> None:
            snap = ref.get(transaction=txn)
            if snap.exists and snap.get("status") == ACCEPTED and snap.get("token") == token:
                txn.update(ref, {"lease_until": now(), "error": error[:2000], "updated_at": now()})

        txn_fn(self.fs.transaction())

    def dead_lettered(self, req, error: str) -> str:
        """The request exhausted its deliveries: 'recorded' as failed, or 'ignored' if answered."""
        ref, body = self.ref(req.request_id), req.model_dump(mode="json")

        @firestore.transactional
        def txn_fn(txn) -> str:
            snap = ref.get(transaction=txn)
            if snap.exists and (snap.get("status") in FINAL or snap.to_dict().get("request") != body):
                return "ignored"
            fields = {"status": FAILED, "error": error[:2000], "lease_until": None, "finished_at": now(),
                      "updated_at": now()}
            if snap.exists:
                txn.update(ref, fields)
            else:
                txn.create(ref, {"request_id": req.request_id, "action": req.action, "request": body,
                                 "attempts": 0, "accepted_at": now(), "result": None, **fields})
            return "recorded"

        return txn_fn(self.fs.transaction())


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
    store = RequestStore(clients.fs)
    token = uuid.uuid4().hex
    verdict, previous = store.claim(req, token)
    if verdict in ("recorded", "reused"):
        log_event("control_request", severity="ERROR" if verdict == "reused" else "INFO",
                  request_id=req.request_id, action=req.action, status=previous["status"],
                  outcome="answered_from_record" if verdict == "recorded" else "request_id_reused_not_run",
                  batch_id=(previous.get("result") or {}).get("batch_id"))
        return {"request_id": req.request_id, "status": previous["status"], "result": previous.get("result"),
                "from_record": True}
    retry_since = previous["accepted_at"] if verdict == "retry" and previous.get("accepted_at") else None
    try:
        try:
            status, result = _ACTIONS[req.action](clients, req, retry_since)
        except REFUSALS as exc:
            status, result = REFUSED, refusal(exc)
            if isinstance(exc, StaleInputs):  # the alert on stale inputs keys on this line, whichever path
                log_event("start_refused_stale_inputs", severity="ERROR", handler="control", error=str(exc),
                          game_date=exc.game_date, newest_loaded_at=exc.newest_loaded_at,
                          max_age_hours=exc.max_age_hours, context_rows=exc.rows, request_id=req.request_id)
        store.finish(req.request_id, status, result)
    except Exception as exc:  # noqa: BLE001 - kept on the record for the operator, then re-raised (5xx)
        store.release(req.request_id, token, f"{type(exc).__name__}: {exc} (Pub/Sub redelivers)")
        raise
    log_event("control_request", severity="WARNING" if status == REFUSED else "INFO", request_id=req.request_id,
              action=req.action, status=status, batch_id=result.get("batch_id"), result=result)
    return {"request_id": req.request_id, "status": status, "result": result, "from_record": False}


def handle_control_dead_letter(clients: Clients, req, attempts: str) -> str:
    outcome = RequestStore(clients.fs).dead_lettered(req, f"control request dead-lettered after {attempts} "
                                                          f"delivery attempts; see the coordinator log")
    log_event("control_request", severity="ERROR", request_id=req.request_id, action=req.action,
              status=FAILED if outcome == "recorded" else "already_answered", delivery_attempts=attempts)
    return outcome


# -- the actions: (status, result) --------------------------------------------------------------
def _started_since(clients: Clients, game_date: dt.date, since: dt.datetime | None) -> dict | None:
    """On a retry: the batch an earlier attempt of this request started, if it got that far (the
    date's active batch, created after the request was accepted). Starting again would supersede it."""
    if since is None:
        return None
    store = BatchStore(clients.fs)
    active = store.active_batch_of(game_date)
    batch = store.get_batch(active) if active else None
    return batch if batch and batch["created_at"] >= since else None


def _start(clients: Clients, req: ctl.StartControl, retry_since) -> tuple[str, dict]:
    earlier = _started_since(clients, req.game_date, retry_since)
    if earlier:
        return DONE, {"batch_id": earlier["batch_id"], "game_date": req.game_date.isoformat(),
                      "expected_items": earlier["expected_items"], "started_by_earlier_attempt": True}
    r = start_batch(clients, StartRequest(game_date=req.game_date, force=req.force,
                                          accept_stale_inputs=req.accept_stale_inputs))
    return DONE, {"batch_id": r.batch_id, "game_date": r.game_date.isoformat(), "expected_items": r.expected_items,
                  "superseded": r.superseded, "invalid_context_rows": r.invalid_context_rows, "resumed": r.resumed}


def _consolidate(clients: Clients, req: ctl.ConsolidateControl, retry_since) -> tuple[str, dict]:
    ok, result = consolidate_again(clients, req.batch_id, f"control:{ctl.request_doc_id(req.request_id)[:16]}")
    return (DONE if ok else REFUSED), result


def _reconcile(clients: Clients, req: ctl.ReconcileControl, retry_since) -> tuple[str, dict]:
    r = reconcile(clients, ReconcileRequest(game_date=req.game_date, redispatch_max=25 if req.repair else 0))
    result = r.as_dict()
    if not req.repair:
        result["action"] = "reported" if r.incomplete_items else "none"
    result["batch_id"] = r.redispatched_batch_id
    return DONE, result


def _redispatch(clients: Clients, req: ctl.RedispatchControl, retry_since) -> tuple[str, dict]:
    store = BatchStore(clients.fs)
    batch = store.get_batch(req.batch_id)
    if batch is None:
        raise UnknownItem(f"no batch {req.batch_id}")
    unknown = sorted(set(req.items) - {i["item_id"] for i in store.items(req.batch_id)})
    if unknown:
        raise UnknownItem(f"batch {req.batch_id} has no items {unknown[:20]}")
    game_date = dt.date.fromisoformat(batch["game_date"])
    earlier = _started_since(clients, game_date, retry_since)
    if earlier and sorted(earlier.get("only_items") or []) == sorted(req.items):
        return DONE, {"batch_id": earlier["batch_id"], "from_batch": req.batch_id, "started_by_earlier_attempt": True}
    r = start_repair(clients, game_date, {req.batch_id: list(req.items)})
    return DONE, {"batch_id": r.batch_id, "from_batch": req.batch_id, "game_date": batch["game_date"],
                  "items": list(req.items), "expected_items": r.expected_items}


def _replay(clients: Clients, req: ctl.ReplayControl, retry_since) -> tuple[str, dict]:
    result = replay_dead_letters(clients, req.source, req.batch_id, req.limit,
                                 f"control:{ctl.request_doc_id(req.request_id)[:16]}")
    return DONE, result


_ACTIONS = {"start": _start, "consolidate": _consolidate, "reconcile": _reconcile, "redispatch": _redispatch,
            "replay_dead_letters": _replay}
