"""The `control_requests` records in Firestore: each change is one transaction that reads the record,
asks batchline/domain/control_lifecycle.py what to write, and writes it.

    control_requests/{sha256(request_id)}   request, status, result, error, batch_id, attempts,
                                            token, lease_until, timestamps
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from google.api_core import exceptions as gexc
from google.api_core import retry
from google.cloud import firestore

from batchline.domain import control_lifecycle as cl
from batchline.domain import control_requests as ctl
from batchline.domain.control_lifecycle import ClaimResult, DeadLetterResult, HolderResult
from batchline.domain.errors import ControlBusy
from batchline.domain.lifecycle import Decision, R
from batchline.layout import CONTROL_REQUESTS


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RequestStore:
    def __init__(self, fs: firestore.Client):
        self.fs = fs

    def ref(self, request_id: str):
        return self.fs.collection(CONTROL_REQUESTS).document(ctl.request_doc_id(request_id))

    def get(self, request_id: str) -> dict | None:
        snap = self.ref(request_id).get()
        return snap.to_dict() if snap.exists else None

    def _apply(self, request_id: str, decide: Callable[[dict | None], Decision[R]]) -> tuple[R, dict | None]:
        """(the decision, the record as it was read), in one transaction."""
        ref = self.ref(request_id)

        @firestore.transactional
        def txn_fn(txn) -> tuple[R, dict | None]:
            snap = ref.get(transaction=txn)
            doc = snap.to_dict() if snap.exists else None
            verdict, fields = decide(doc)
            if fields is not None:
                if doc is None:
                    txn.create(ref, fields)
                else:
                    txn.update(ref, fields)
            return verdict, doc

        return txn_fn(self.fs.transaction())

    def claim(self, req, token: str) -> tuple[ClaimResult, dict | None]:
        """control_lifecycle.decide_claim once; raises ControlBusy while a live holder runs it."""
        body = req.model_dump(mode="json")
        verdict, doc = self._apply(req.request_id, lambda d: cl.decide_claim(
            d, body, req.action, req.request_id, token, now()))
        if verdict == ClaimResult.BUSY:
            raise ControlBusy(f"request {req.request_id} is being run by another delivery")
        return verdict, doc

    def claim_waiting(self, req, token: str,
                      wait: dt.timedelta = cl.HOLDER_WAIT) -> tuple[ClaimResult, dict | None]:
        """claim, waiting (up to `wait`) while a live holder runs the request: it answers (then this
        delivery answers from the record), or it died and its lease lapses (then this one takes over).
        ControlBusy after `wait`: a holder that is alive and slow is not taken over."""
        waiting = retry.Retry(predicate=retry.if_exception_type(ControlBusy), initial=0.5, maximum=2.0,
                              multiplier=1.5, timeout=wait.total_seconds())
        try:
            return waiting(self.claim)(req, token)
        except gexc.RetryError as exc:
            raise ControlBusy(f"request {req.request_id} is still being run by another delivery") from exc

    def renew(self, request_id: str, token: str) -> bool:
        return self._apply(request_id, lambda d: cl.decide_renew(d or {}, token, now()))[0] == HolderResult.RENEWED

    def note(self, request_id: str, token: str, fields: dict) -> bool:
        return self._apply(request_id, lambda d: cl.decide_note(d or {}, token, fields, now()))[0] == HolderResult.NOTED

    def finish(self, request_id: str, token: str, status: str, result: dict) -> bool:
        decided = self._apply(request_id, lambda d: cl.decide_finish(d or {}, token, status, result, now()))
        return decided[0] == HolderResult.FINISHED

    def release(self, request_id: str, token: str, error: str) -> None:
        self._apply(request_id, lambda d: cl.decide_release(d or {}, token, error, now()))

    def dead_lettered(self, req, error: str) -> DeadLetterResult:
        """The request exhausted its deliveries: 'recorded' as failed, or 'ignored' (control_lifecycle)."""
        body = req.model_dump(mode="json")
        return self._apply(req.request_id, lambda d: cl.decide_dead_letter(
            d, body, req.action, req.request_id, error, now()))[0]
