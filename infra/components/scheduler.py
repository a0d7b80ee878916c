"""Cloud Scheduler: the daily start, the stall check (every 15 minutes in the game window) and the
daily reconciliation. Each job POSTs JSON with an OIDC token of the scheduler service account and
retries with backoff. The start job sends `{}`: the coordinator then uses today's date in its
configured time zone."""

from __future__ import annotations

import base64

import pulumi
import pulumi_gcp as gcp

from batchline.topology import COORDINATOR, PATH_RECONCILE, PATH_STALL_CHECK, PATH_START, RECONCILE
from infra.config import Schedule, SchedulesConfig

EMPTY_JSON = base64.b64encode(b"{}").decode()

# job key -> (function, path)
JOBS: dict[str, tuple[str, str]] = {
    "start": (COORDINATOR, PATH_START),
    "stall-check": (COORDINATOR, PATH_STALL_CHECK),
    "reconcile": (RECONCILE, PATH_RECONCILE),
}


class Scheduler(pulumi.ComponentResource):
    def __init__(self, name: str, project: str, region: str, prefix: str, cfg: SchedulesConfig,
                 uris: dict[str, pulumi.Input[str]], scheduler_email: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:Scheduler", name, None, opts)
        schedules: dict[str, Schedule] = {"start": cfg.start, "stall-check": cfg.stall_check,
                                          "reconcile": cfg.reconcile}
        r = cfg.retry
        self.jobs: dict[str, gcp.cloudscheduler.Job] = {}
        for key, (fn, path) in JOBS.items():
            s = schedules[key]
            uri = uris[fn]
            self.jobs[key] = gcp.cloudscheduler.Job(
                f"{name}-{key}", project=project, region=region, name=f"{prefix}-{key}",
                description=f"batchline {key}: POST {fn}{path}",
                schedule=s.cron, time_zone=s.time_zone,
                attempt_deadline=f"{r.attempt_deadline_s}s",
                retry_config={"retry_count": r.retry_count, "min_backoff_duration": f"{r.min_backoff_s}s",
                              "max_backoff_duration": f"{r.max_backoff_s}s", "max_doublings": r.max_doublings},
                http_target={
                    "http_method": "POST",
                    "uri": pulumi.Output.concat(uri, path),
                    "body": EMPTY_JSON,
                    "headers": {"Content-Type": "application/json"},
                    "oidc_token": {"service_account_email": scheduler_email, "audience": uri},
                },
                opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"jobs": {k: j.name for k, j in self.jobs.items()}})
