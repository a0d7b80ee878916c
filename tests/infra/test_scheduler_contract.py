"""The deployed Cloud Scheduler jobs are the schedule contract's jobs (batchline/schedules.py), which the
local scheduler runs too: nothing about a job may be decided in infra alone."""

from __future__ import annotations

import base64
import copy

from batchline.schedules import render_jobs
from infra import harness
from infra.resource_types import T_FUNCTION, T_JOB


def _deployed(run: harness.StackRun) -> dict[str, dict]:
    return {j.inputs["name"]: j.inputs for j in run.of_type(T_JOB)}


def _function_urls(run: harness.StackRun) -> dict[str, str]:
    prefix = run.config.pubsub.topic_prefix
    return {f.inputs["name"].removeprefix(prefix + "-"): f.outputs["url"] for f in run.of_type(T_FUNCTION)}


def test_every_deployed_job_is_a_contract_job_field_by_field(any_run):
    cfg = any_run.config
    jobs = render_jobs(cfg.pubsub.topic_prefix, cfg.schedules)
    deployed = _deployed(any_run)
    assert set(deployed) == {j.name for j in jobs}
    urls = _function_urls(any_run)
    for job in jobs:
        got = deployed[job.name]
        r = job.retry
        assert (got["schedule"], got["timeZone"], got["description"]) == (job.cron, job.time_zone, job.description)
        assert got["attemptDeadline"] == f"{r.attempt_deadline_s}s"
        assert got["retryConfig"] == {"retryCount": r.retry_count, "minBackoffDuration": f"{r.min_backoff_s}s",
                                      "maxBackoffDuration": f"{r.max_backoff_s}s", "maxDoublings": r.max_doublings}
        target = got["httpTarget"]
        assert target["httpMethod"] == job.http_method
        assert base64.b64decode(target["body"]).decode() == job.body
        assert target["headers"] == job.headers
        assert target["uri"] == urls[job.function] + job.path
        assert target["oidcToken"]["audience"] == urls[job.function]


def test_a_jobs_own_retry_config_reaches_only_that_job(dev_raw):
    raw = copy.deepcopy(dev_raw)
    raw["schedules"]["stall_check"]["retry"] = {"retry_count": 0, "attempt_deadline_s": 600}
    run = harness.run_program(raw, stack="dev")
    deployed = _deployed(run)
    stall, start = deployed["batchline-dev-stall-check"], deployed["batchline-dev-start"]
    assert stall["retryConfig"]["retryCount"] == 0 and stall["attemptDeadline"] == "600s"
    assert start["retryConfig"]["retryCount"] == 1 and start["attemptDeadline"] == "930s", "the stack-wide values"
