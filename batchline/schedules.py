"""The Cloud Scheduler jobs, declared once (as batchline.topology is for Pub/Sub).

`render_jobs` turns a stack's `batchline:schedules` config into the jobs: name, target function and
route, method, body, headers, cron, time zone, retry config and attempt deadline. The Pulumi program
(infra/components/scheduler.py) declares exactly these on Cloud Scheduler, and the local scheduler
(batchline/local/scheduler.py) runs exactly these against the local functions, so what runs locally
is what is deployed. The config models are the stack config's own (infra/config.py validates them).

Also here, because both sides need them: what Cloud Scheduler adds to every request
(`scheduler_headers`), how a target tells a scheduler call from another caller (`is_scheduler_call`),
and Google's backoff between retries (`backoff_delays`). Pure: no Pulumi, no croniter (the functions
import this module). Google's behaviour it follows is cited in docs/scheduler.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from batchline.topology import COORDINATOR, PATH_RECONCILE, PATH_STALL_CHECK, PATH_START, RECONCILE


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class SchedulerRetry(_Frozen):
    """A job's retry config (Cloud Scheduler's RetryConfig) and its attempt deadline."""

    retry_count: int = 3
    min_backoff_s: int = 30
    max_backoff_s: int = 600
    max_doublings: int = 3
    attempt_deadline_s: int = 600


class Schedule(_Frozen):
    cron: str
    time_zone: str
    # effective for this job: the stack-wide `schedules.retry`, then the job's own `retry` keys over it
    retry: SchedulerRetry = Field(default_factory=SchedulerRetry)


class SchedulesConfig(_Frozen):
    start: Schedule
    stall_check: Schedule
    reconcile: Schedule
    retry: SchedulerRetry = Field(default_factory=SchedulerRetry)  # the stack-wide values


@dataclass(frozen=True)
class JobTarget:
    """What a job calls: its config key (`schedules.<config_key>`), function and route."""

    config_key: str
    function: str
    path: str


# job key (the job's name suffix) -> its target. Every job POSTs `{}`: the target decides the date
# (start: today, reconcile: yesterday, in the schedule's time zone) and the stall check reads the
# stack's thresholds from its own settings.
JOB_TARGETS: dict[str, JobTarget] = {
    "start": JobTarget("start", COORDINATOR, PATH_START),
    "stall-check": JobTarget("stall_check", COORDINATOR, PATH_STALL_CHECK),
    "reconcile": JobTarget("reconcile", RECONCILE, PATH_RECONCILE),
}
JOB_BODY = "{}"
JOB_HEADERS: dict[str, str] = {"Content-Type": "application/json"}


class ScheduledJob(_Frozen):
    """One Cloud Scheduler job with an HTTP target, as declared and as run locally."""

    key: str
    name: str
    description: str
    function: str
    path: str
    http_method: str = "POST"
    body: str = JOB_BODY
    headers: dict[str, str] = Field(default_factory=lambda: dict(JOB_HEADERS))
    cron: str
    time_zone: str
    retry: SchedulerRetry


def render_jobs(prefix: str, schedules: SchedulesConfig) -> tuple[ScheduledJob, ...]:
    """The stack's jobs, in JOB_TARGETS order; `prefix` is the stack's topic prefix (names everything)."""
    jobs = []
    for key, target in JOB_TARGETS.items():
        s: Schedule = getattr(schedules, target.config_key)
        jobs.append(ScheduledJob(
            key=key, name=f"{prefix}-{key}", description=f"batchline {key}: POST {target.function}{target.path}",
            function=target.function, path=target.path, cron=s.cron, time_zone=s.time_zone, retry=s.retry))
    return tuple(jobs)


def backoff_delays(retry: SchedulerRetry) -> tuple[float, ...]:
    """Seconds to wait after each failed attempt before the next, for the `retry_count` retries.

    Google's RetryConfig: the interval starts at min_backoff, doubles max_doublings times, then grows
    linearly by min_backoff * 2^max_doublings, capped at max_backoff (10 s, 300 s, 3 doublings: 10, 20,
    40, 80, 160, 240, 300, 300 ...)."""
    out = []
    step = retry.min_backoff_s * 2 ** retry.max_doublings
    for k in range(1, retry.retry_count + 1):
        delay = retry.min_backoff_s * 2 ** (k - 1) if k - 1 <= retry.max_doublings \
            else step * (k - retry.max_doublings)
        out.append(float(min(delay, retry.max_backoff_s)))
    return tuple(out)


# What Cloud Scheduler sets on each request of a job (docs/scheduler.md): its User-Agent (replacing any
# the job sets) and the X-CloudScheduler headers naming the job and the execution's schedule time.
SCHEDULER_USER_AGENT = "Google-Cloud-Scheduler"
HEADER_SCHEDULER = "X-CloudScheduler"
HEADER_JOB_NAME = "X-CloudScheduler-JobName"
HEADER_SCHEDULE_TIME = "X-CloudScheduler-ScheduleTime"


def scheduler_headers(job: ScheduledJob, schedule_time: dt.datetime) -> dict[str, str]:
    """The headers of one attempt: the job's own, then what Cloud Scheduler adds (RFC 3339, UTC)."""
    when = schedule_time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**job.headers, "User-Agent": SCHEDULER_USER_AGENT, HEADER_SCHEDULER: "true",
            HEADER_JOB_NAME: job.name, HEADER_SCHEDULE_TIME: when}


def is_scheduler_call(headers: Mapping[str, str]) -> bool:
    """Whether a request came from Cloud Scheduler (or the local scheduler). Only the status of a
    refusal depends on it (batchline.http.for_scheduler), never what the handler does, so a caller
    that forges it gains nothing."""
    return (headers.get(HEADER_SCHEDULER, "").lower() == "true"
            or headers.get("User-Agent", "").startswith(SCHEDULER_USER_AGENT))
