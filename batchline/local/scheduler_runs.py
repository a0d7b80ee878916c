"""One execution of a scheduled job, run as Cloud Scheduler runs it (docs/scheduler.md), and the record
of every execution in `<state dir>/scheduler-state.json`.

An execution is up to 1 + retry_count attempts. Each attempt POSTs the job's body with the job's
headers plus what Cloud Scheduler adds (User-Agent, X-CloudScheduler-*), with the attempt deadline
as its timeout; a 2xx ends it (a 2xx carrying `refused` is recorded as refused: the target declined
and said not to retry), anything else or no answer fails the attempt, and the next one waits the
backoff Google's RetryConfig gives (batchline.schedules.backoff_delays). Locally there is no OIDC
token: the functions run without Cloud Run's IAM check in front of them.

The scheduler process and `batchline local trigger` both run executions through `execute` and record
them through `record`, which holds a lock on the state file, so two writers never lose each other's
results.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from batchline.logs import log_event
from batchline.schedules import ScheduledJob, backoff_delays, scheduler_headers

STATE_FILE = "scheduler-state.json"
LOCK_FILE = "scheduler-state.lock"
KEEP_EXECUTIONS = 20
SUCCEEDED, REFUSED, FAILED, RUNNING, INTERRUPTED = "succeeded", "refused", "failed", "running", "interrupted"


@dataclass
class Attempt:
    number: int
    started_at: str
    seconds: float
    status: int | None  # None: no answer (refused connection, deadline exceeded)
    outcome: str
    detail: str


@dataclass
class Execution:
    job: str
    trigger: str  # "schedule" or "manual" (`batchline local trigger`)
    schedule_time: str
    started_at: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    outcome: str = RUNNING
    attempts: list[Attempt] = field(default_factory=list)
    finished_at: str | None = None


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds")


def judge(status: int | None, body: bytes, error: str | None = None) -> tuple[str, str]:
    """(outcome, detail) of one attempt: pure, from the answer's status and body."""
    if status is None:
        return FAILED, (error or "no answer")[:300]
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        payload = {}
    payload = payload if isinstance(payload, dict) else {}
    if 200 <= status < 300:
        if payload.get("refused"):
            return REFUSED, f"refused ({payload.get('refused_status')}): {payload.get('error')}"[:300]
        return SUCCEEDED, f"HTTP {status}: " + ", ".join(k for k in payload if k != "ok")[:200]
    return FAILED, f"HTTP {status}: {payload.get('error') or body[:200].decode('utf-8', 'replace')}"[:300]


def execute(job: ScheduledJob, url: Callable[[], str], schedule_time: dt.datetime, *, trigger: str = "schedule",
            on_update: Callable[[Execution], None] = lambda e: None,
            post: Callable[..., requests.Response] = requests.post,
            sleep: Callable[[float], None] = time.sleep, log: Callable[..., object] = log_event) -> Execution:
    """Run one execution to its end. `url()` is asked at every attempt (a healed function may have
    moved); it raises LookupError when the target is gone, which fails that attempt."""
    delays = backoff_delays(job.retry)
    ex = Execution(job.key, trigger, _iso(schedule_time), _iso(dt.datetime.now(dt.UTC)))
    on_update(ex)
    for number in range(1, len(delays) + 2):
        started, t0 = dt.datetime.now(dt.UTC), time.monotonic()
        try:
            resp = post(url(), data=job.body.encode(), headers=scheduler_headers(job, schedule_time),
                        timeout=job.retry.attempt_deadline_s)
            outcome, detail = judge(resp.status_code, resp.content)
            status: int | None = resp.status_code
        except (requests.RequestException, LookupError) as exc:
            outcome, detail = judge(None, b"", f"{type(exc).__name__}: {exc}")
            status = None
        ex.attempts.append(Attempt(number, _iso(started), round(time.monotonic() - t0, 3), status, outcome, detail))
        log("scheduler_attempt", severity="ERROR" if outcome == FAILED else "INFO", scheduler_job=job.name,
                  attempt=number, status=status, outcome=outcome, detail=detail, trigger=trigger,
                  schedule_time=ex.schedule_time)
        if outcome != FAILED or number > len(delays):
            ex.outcome = outcome
            break
        on_update(ex)
        sleep(delays[number - 1])
    ex.finished_at = _iso(dt.datetime.now(dt.UTC))
    on_update(ex)
    return ex


# -- the state file ---------------------------------------------------------------------------------
@contextmanager
def _locked(state_dir: Path) -> Iterator[dict]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / LOCK_FILE, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            doc = read(state_dir)
            yield doc
            tmp = state_dir / (STATE_FILE + ".tmp")
            tmp.write_text(json.dumps(doc, indent=2))
            os.replace(tmp, state_dir / STATE_FILE)
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def read(state_dir: Path | str) -> dict:
    """{"jobs": {key: {"executions": [...], "skipped": n, "next_fire": iso}}, "tick": iso}"""
    try:
        doc = json.loads((Path(state_dir) / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        doc = {}
    doc.setdefault("jobs", {})
    return doc


def _job(doc: dict, key: str) -> dict:
    return doc["jobs"].setdefault(key, {"executions": [], "skipped": 0, "next_fire": None})


def record(state_dir: Path | str, ex: Execution) -> None:
    """Add or update `ex` (by id) in its job's history, keeping the latest KEEP_EXECUTIONS."""
    with _locked(Path(state_dir)) as doc:
        runs = [r for r in _job(doc, ex.job)["executions"] if r["id"] != ex.id] + [asdict(ex)]
        _job(doc, ex.job)["executions"] = runs[-KEEP_EXECUTIONS:]


def record_plan(state_dir: Path | str, next_fire: dict[str, str | None], skipped: dict[str, int]) -> None:
    """The scheduler's heartbeat: each job's next fire time, and fire times skipped since the last."""
    with _locked(Path(state_dir)) as doc:
        doc["tick"] = _iso(dt.datetime.now(dt.UTC))
        for key, when in next_fire.items():
            _job(doc, key)["next_fire"] = when
            _job(doc, key)["skipped"] += skipped.get(key, 0)


def mark_interrupted(state_dir: Path | str) -> None:
    """At start: a scheduled execution still `running` belonged to a scheduler process that was stopped
    (a manual one belongs to a `batchline local trigger` that may still be running)."""
    with _locked(Path(state_dir)) as doc:
        for job in doc["jobs"].values():
            for r in job["executions"]:
                if r["outcome"] == RUNNING and r["trigger"] == "schedule":
                    r["outcome"] = INTERRUPTED
