"""Issue 18.6: Cloud Scheduler retries every non-2xx, so a refusal of a scheduler's call (a start of a
date still running, on stale inputs, with no context rows yet) is answered 2xx with `refused`, loudly,
and never retried; other callers keep their 409/424/400, and failures stay 5xx for everyone."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import functions_framework
import pytest

from batchline.domain.errors import BatchConflict, InvalidMessage, StaleInputs
from batchline.http import refused_for_scheduler
from batchline.schedules import JOB_TARGETS, ScheduledJob, SchedulerRetry, is_scheduler_call, scheduler_headers

ROOT = Path(__file__).resolve().parents[2]
JOB = ScheduledJob(key="start", name="batchline-dev-start", description="d", function="coordinator",
                   path="/start", cron="0 12 * * *", time_zone="America/New_York", retry=SchedulerRetry())
HEADERS = scheduler_headers(JOB, dt.datetime(2030, 1, 2, 17, 0, tzinfo=dt.UTC))


def _coordinator(monkeypatch, exc: Exception):
    app = functions_framework.create_app("coordinator", str(ROOT / "functions" / "coordinator" / "main.py"))
    module = sys.modules["main"]
    monkeypatch.setattr(module, "default_clients", lambda: object())

    def refuse(clients, req):
        raise exc
    monkeypatch.setattr(module, "start_batch", refuse)
    monkeypatch.setattr(module, "stall_check", refuse)
    return app.test_client()


def _lines(capsys) -> list[dict]:
    return [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]


REFUSALS = [
    (BatchConflict("20300102_abcdefabcdef", "running"), 409, "start_conflict"),
    (StaleInputs(dt.date(2030, 1, 2), dt.datetime(2030, 1, 1, tzinfo=dt.UTC), 24, 450), 424,
     "start_refused_stale_inputs"),
    (InvalidMessage("no valid context rows for 2030-01-02; nothing to run"), 400, "request_rejected"),
]


@pytest.mark.parametrize(("exc", "status", "event"), REFUSALS)
def test_a_refused_scheduled_start_is_a_2xx_that_says_so_and_an_error_line(monkeypatch, capsys, exc, status, event):
    client = _coordinator(monkeypatch, exc)
    resp = client.post("/start", data=JOB.body, headers=HEADERS)
    assert resp.status_code == 200, "a 2xx: Cloud Scheduler must not retry a refusal"
    body = resp.get_json()
    assert body["ok"] is False and body["refused"] is True and body["refused_status"] == status
    lines = _lines(capsys)
    assert event in [x["event"] for x in lines], "the refusal's own line (and its alert) is kept"
    loud = [x for x in lines if x["event"] == "scheduled_call_refused"]
    assert len(loud) == 1 and loud[0]["severity"] == "ERROR" and loud[0]["refused_status"] == status
    assert loud[0]["scheduler_job"] == "batchline-dev-start" and loud[0]["schedule_time"] == "2030-01-02T17:00:00Z"


@pytest.mark.parametrize(("exc", "status", "event"), REFUSALS)
def test_other_callers_keep_the_refusal_status(monkeypatch, capsys, exc, status, event):
    client = _coordinator(monkeypatch, exc)
    resp = client.post("/start", data="{}", content_type="application/json")
    assert resp.status_code == status
    assert "scheduled_call_refused" not in [x["event"] for x in _lines(capsys)]


def test_a_scheduled_calls_failure_stays_a_5xx_so_the_scheduler_retries_it(monkeypatch, capsys):
    client = _coordinator(monkeypatch, RuntimeError("firestore unavailable"))
    for path in ("/start", JOB_TARGETS["stall-check"].path):
        assert client.post(path, data="{}", headers=HEADERS).status_code == 500


def test_only_4xx_answers_are_refusals():
    assert [s for s in (200, 400, 404, 408, 409, 424, 429, 499, 500, 503) if refused_for_scheduler(s)] == [
        400, 404, 409, 424, 499]


def test_a_scheduler_call_is_told_by_cloud_schedulers_own_headers():
    assert is_scheduler_call(HEADERS)
    assert is_scheduler_call({"User-Agent": "Google-Cloud-Scheduler"})
    assert is_scheduler_call({"X-CloudScheduler": "true"})
    assert not is_scheduler_call({"User-Agent": "python-requests/2.32", "Content-Type": "application/json"})
    assert not is_scheduler_call({"X-CloudScheduler": "false"})
