"""Cloud Scheduler: the daily start, the stall check (every minute in the game window) and the daily
reconciliation, exactly as the schedule contract renders them (batchline/schedules.py, which the
local scheduler runs too). Each job POSTs `{}` with an OIDC token of the scheduler service account
(audience: the function's URL) and retries with its own retry config and attempt deadline."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from batchline.schedules import ScheduledJob, render_jobs
from infra.config_types import SchedulesConfig


def job_inputs(job: ScheduledJob) -> dict:
    """The Job's schedule, retry and deadline inputs (everything but the target's URL and token)."""
    r = job.retry
    return {
        "name": job.name, "description": job.description, "schedule": job.cron, "time_zone": job.time_zone,
        "attempt_deadline": f"{r.attempt_deadline_s}s",
        "retry_config": {"retry_count": r.retry_count, "min_backoff_duration": f"{r.min_backoff_s}s",
                         "max_backoff_duration": f"{r.max_backoff_s}s", "max_doublings": r.max_doublings},
    }


@dataclass
class SchedulerArgs:
    project: str
    region: str
    prefix: str  # the stack's topic prefix: the jobs' names
    cfg: SchedulesConfig
    uris: dict[str, pulumi.Input[str]]  # function -> its URL
    scheduler_email: pulumi.Input[str]  # the account the jobs' OIDC tokens are minted for


class Scheduler(pulumi.ComponentResource):
    def __init__(self, name: str, args: SchedulerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:Scheduler", name, None, opts)
        self.jobs: dict[str, gcp.cloudscheduler.Job] = {}
        for job in render_jobs(args.prefix, args.cfg):
            uri = args.uris[job.function]
            self.jobs[job.key] = gcp.cloudscheduler.Job(
                f"{name}-{job.key}", project=args.project, region=args.region, **job_inputs(job),
                http_target={
                    "http_method": job.http_method,
                    "uri": pulumi.Output.concat(uri, job.path),
                    "body": base64.b64encode(job.body.encode()).decode(),
                    "headers": dict(job.headers),
                    "oidc_token": {"service_account_email": args.scheduler_email, "audience": uri},
                },
                opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"jobs": {k: j.name for k, j in self.jobs.items()}})
