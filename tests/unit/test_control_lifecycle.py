"""The control requests' lifecycle decisions (batchline/domain/control_lifecycle.py), without Firestore:
a redelivered request takes over only from a holder whose own short lease lapsed, and only the
holder renews, notes or answers (issue 17.6)."""

from __future__ import annotations

import datetime as dt

import pytest

from batchline.adapters.control_records import RequestStore
from batchline.domain import control_lifecycle as cl
from batchline.domain.errors import ControlBusy

T0 = dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC)
BODY = {"v": 1, "action": "start", "request_id": "r1", "game_date": "2030-01-02", "force": False,
        "accept_stale_inputs": False}


def _claim(doc, token, t=T0, body=BODY):
    return cl.decide_claim(doc, body, "start", "r1", token, t)


def _held_by(token: str, t=T0) -> dict:
    verdict, record = _claim(None, token, t)
    assert verdict == "run"
    return record


def test_the_first_delivery_runs_under_a_short_lease_of_its_own():
    record = _held_by("a")
    assert record["status"] == cl.ACCEPTED and record["token"] == "a" and record["attempts"] == 1
    assert record["lease_until"] == T0 + cl.CONTROL_LEASE and cl.CONTROL_LEASE <= dt.timedelta(seconds=60)
    assert cl.RENEW_EVERY * 4 == cl.CONTROL_LEASE


def test_a_redelivery_waits_for_a_live_holder_and_takes_over_a_dead_one():
    record = _held_by("a")
    assert _claim(record, "b", T0 + cl.CONTROL_LEASE - dt.timedelta(seconds=1)) == ("busy", None)
    verdict, update = _claim(record, "b", T0 + cl.CONTROL_LEASE)
    assert verdict == "retry" and update["token"] == "b" and update["previous_token"] == "a"
    assert update["attempts"] == 2 and update["lease_until"] == T0 + 2 * cl.CONTROL_LEASE
    assert cl.HOLDER_WAIT > cl.CONTROL_LEASE, "a waiting redelivery outwaits a dead holder's lease"


def test_a_renewing_holder_is_never_taken_over():
    record = _held_by("a")
    t = T0
    for _ in range(10):
        t += cl.RENEW_EVERY
        verdict, update = cl.decide_renew(record, "a", t)
        assert verdict == "renewed"
        record = {**record, **update}
        assert _claim(record, "b", t + cl.RENEW_EVERY) == ("busy", None)


def test_only_the_holder_renews_notes_answers_or_releases():
    record = {**_held_by("a"), "token": "b"}  # "b" took over
    assert cl.decide_renew(record, "a", T0) == ("lost", None)
    assert cl.decide_note(record, "a", {"batch_id": "x"}, T0) == ("lost", None)
    assert cl.decide_finish(record, "a", cl.DONE, {"batch_id": "x"}, T0) == ("lost", None)
    assert cl.decide_release(record, "a", "boom", T0) == ("lost", None)
    verdict, update = cl.decide_note(record, "b", {"batch_id": "x"}, T0)
    assert verdict == "noted" and update["batch_id"] == "x"


def test_an_answer_is_final_and_names_the_batch():
    record = {**_held_by("a"), "batch_id": "20300102_abcdefabcdef"}
    verdict, update = cl.decide_finish(record, "a", cl.DONE, {"expected_items": 3}, T0)
    assert verdict == "finished" and update["batch_id"] == "20300102_abcdefabcdef" and update["lease_until"] is None
    done = {**record, **update}
    assert _claim(done, "b", T0 + dt.timedelta(hours=1)) == ("recorded", None)
    assert _claim(done, "b", body={**BODY, "force": True}) == ("reused", None)
    refused = {**record, **cl.decide_finish(record, "a", cl.REFUSED, {"error": "stale"}, T0)[1]}
    assert refused["status"] == cl.REFUSED and refused["error"] == "stale"


def test_a_released_attempt_is_retried_at_once():
    record = _held_by("a")
    verdict, update = cl.decide_release(record, "a", "BigQuery away", T0 + dt.timedelta(seconds=1))
    assert verdict == "released"
    assert _claim({**record, **update}, "b", T0 + dt.timedelta(seconds=1))[0] == "retry"


def test_a_dead_letter_fails_only_a_request_nobody_holds_and_names_its_batch():
    record = {**_held_by("a"), "batch_id": "20300102_abcdefabcdef"}
    assert cl.decide_dead_letter(record, BODY, "start", "r1", "5 attempts", T0) == ("ignored", None), \
        "a live holder answers"
    verdict, update = cl.decide_dead_letter(record, BODY, "start", "r1", "5 attempts", T0 + cl.CONTROL_LEASE)
    assert verdict == "recorded" and update["status"] == cl.FAILED
    assert update["result"] == {"batch_id": "20300102_abcdefabcdef"}, "the record names the batch"
    verdict, update = cl.decide_dead_letter({**record, "error": "StaleInputs: ..."}, BODY, "start", "r1",
                                            "dead-lettered after 5 attempts", T0 + cl.CONTROL_LEASE)
    assert update["error"] == "dead-lettered after 5 attempts; the last attempt's error: StaleInputs: ...", \
        "the reason is kept, not 'see the log'"
    verdict, created = cl.decide_dead_letter(None, BODY, "start", "r1", "5 attempts", T0)
    assert verdict == "recorded" and created["status"] == cl.FAILED and created["attempts"] == 0
    done = {**record, "status": cl.DONE}
    assert cl.decide_dead_letter(done, BODY, "start", "r1", "x", T0)[0] == "ignored"
    assert cl.decide_dead_letter(record, {**BODY, "force": True}, "start", "r1", "x", T0 + cl.CONTROL_LEASE)[0] == \
        "ignored", "another request under the same id"


def test_a_redelivery_that_outwaits_a_live_holder_answers_control_busy(monkeypatch):
    """claim_waiting gives up after `wait` with ControlBusy (a 5xx Pub/Sub redelivers), not another
    error: its retry's timeout is google.api_core's RetryError (there is no retry.RetryError)."""
    def busy(self, req, token):
        raise ControlBusy("held by another delivery")

    monkeypatch.setattr(RequestStore, "claim", busy)
    req = type("Req", (), {"request_id": "r1"})()
    with pytest.raises(ControlBusy, match="still being run by another delivery"):
        RequestStore(None).claim_waiting(req, "t", wait=dt.timedelta(seconds=0.3))
