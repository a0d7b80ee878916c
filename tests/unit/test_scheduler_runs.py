"""One execution of a scheduled job, retries included, and the scheduler's loop around it, without the
network: the HTTP call is an in-memory double that answers what each case needs."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import requests

from batchline.local import schedule_config, scheduler
from batchline.local import scheduler_runs as runs
from batchline.schedules import SchedulerRetry

NOW = dt.datetime(2030, 1, 2, 17, 0, tzinfo=dt.UTC)


def _job(retry_count: int = 1):
    job = {j.job.key: j.job for j in schedule_config.load("dev").jobs}["stall-check"]
    return job.model_copy(update={"retry": SchedulerRetry(retry_count=retry_count, attempt_deadline_s=930)})


class Answers:
    """Answers each POST with the next of `script` (a status, or an exception to raise)."""

    def __init__(self, *script) -> None:
        self.script, self.calls = list(script), []

    def __call__(self, url, data, headers, timeout):
        self.calls.append({"url": url, "data": data, "headers": headers, "timeout": timeout})
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        resp = requests.Response()
        resp.status_code, resp._content = step
        return resp


def _run(post, retry_count=1, url=lambda: "http://127.0.0.1:1/stall-check"):
    sleeps: list[float] = []
    updates: list[str] = []
    ex = runs.execute(_job(retry_count), url, NOW, post=post, sleep=sleeps.append,
                      on_update=lambda e: updates.append(e.outcome), log=lambda *a, **k: None)
    return ex, sleeps, updates


def test_a_failed_attempt_is_retried_after_its_backoff_and_a_2xx_ends_the_execution():
    post = Answers((500, b'{"ok": false, "error": "StallCheckErrors"}'), (200, b'{"ok": true, "stalled": []}'))
    ex, sleeps, updates = _run(post)
    assert ex.outcome == runs.SUCCEEDED and [a.status for a in ex.attempts] == [500, 200]
    assert sleeps == [30.0], "dev's retry config: one retry after min_backoff"
    assert updates[0] == runs.RUNNING and updates[-1] == runs.SUCCEEDED and ex.finished_at


def test_every_attempt_is_the_jobs_request_with_the_deadline_as_its_timeout():
    post = Answers((200, b'{"ok": true}'))
    _run(post)
    (call,) = post.calls
    assert call["url"] == "http://127.0.0.1:1/stall-check" and call["data"] == b"{}" and call["timeout"] == 930
    assert call["headers"]["X-CloudScheduler-JobName"] == "batchline-dev-stall-check"
    assert call["headers"]["X-CloudScheduler-ScheduleTime"] == "2030-01-02T17:00:00Z"


def test_no_answer_at_all_uses_every_retry_then_fails():
    post = Answers(*[requests.ConnectionError("refused")] * 4)
    ex, sleeps, _ = _run(post, retry_count=3)
    assert ex.outcome == runs.FAILED and len(ex.attempts) == 4 and sleeps == [30.0, 60.0, 120.0]
    assert all(a.status is None and "ConnectionError" in a.detail for a in ex.attempts)


def test_a_refusal_is_not_retried():
    post = Answers((200, b'{"ok": false, "refused": true, "refused_status": 409, "error": "still running"}'))
    ex, sleeps, _ = _run(post, retry_count=3)
    assert ex.outcome == runs.REFUSED and len(ex.attempts) == 1 and sleeps == []


def test_a_target_gone_from_the_stack_fails_the_attempt_instead_of_the_scheduler():
    def gone() -> str:
        raise LookupError("the local stack has no coordinator running")
    ex, _, _ = _run(Answers(), retry_count=0, url=gone)
    assert ex.outcome == runs.FAILED and "LookupError" in ex.attempts[0].detail


def test_the_record_keeps_the_latest_executions_and_updates_one_in_place(tmp_path):
    ex = runs.Execution("stall-check", "schedule", "t", "t")
    runs.record(tmp_path, ex)
    ex.outcome = runs.SUCCEEDED
    runs.record(tmp_path, ex)
    assert [r["outcome"] for r in runs.read(tmp_path)["jobs"]["stall-check"]["executions"]] == [runs.SUCCEEDED]
    for i in range(runs.KEEP_EXECUTIONS + 5):
        runs.record(tmp_path, runs.Execution("stall-check", "schedule", str(i), "t"))
    kept = runs.read(tmp_path)["jobs"]["stall-check"]["executions"]
    assert len(kept) == runs.KEEP_EXECUTIONS and kept[-1]["schedule_time"] == str(runs.KEEP_EXECUTIONS + 4)


def test_a_restarted_scheduler_marks_its_own_unfinished_executions_interrupted(tmp_path):
    runs.record(tmp_path, runs.Execution("stall-check", "schedule", "a", "a"))
    runs.record(tmp_path, runs.Execution("start", "manual", "b", "b"))  # a `local trigger` still running
    runs.mark_interrupted(tmp_path)
    jobs = runs.read(tmp_path)["jobs"]
    assert jobs["stall-check"]["executions"][0]["outcome"] == runs.INTERRUPTED
    assert jobs["start"]["executions"][0]["outcome"] == runs.RUNNING


@pytest.fixture
def blocked_executions(monkeypatch):
    """Executions that run until released, so a tick can find one still running."""
    release, started = threading.Event(), []

    def execute(job, url, when, **kw):
        started.append((job.key, when))
        release.wait(5)
    monkeypatch.setattr(runs, "execute", execute)
    yield started
    release.set()


def test_a_fire_time_that_comes_while_the_last_execution_runs_is_skipped_and_counted(tmp_path, blocked_executions):
    every_minute = schedule_config.load("dev", {"stall-check": "* * * * *", "start": "off", "reconcile": "off"})
    s = scheduler.Scheduler(tmp_path, every_minute, NOW)
    assert list(s.next_at) == ["stall-check"], "paused jobs are not planned"
    s.tick(NOW + dt.timedelta(minutes=1))
    s.tick(NOW + dt.timedelta(minutes=2))
    assert blocked_executions == [("stall-check", NOW + dt.timedelta(minutes=1))]
    state = runs.read(tmp_path)["jobs"]["stall-check"]
    assert state["skipped"] == 1 and state["next_fire"] == (NOW + dt.timedelta(minutes=3)).isoformat()
