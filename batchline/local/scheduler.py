"""The local scheduler: a process of the local stack that runs the stack's Cloud Scheduler jobs
against the local functions, as Cloud Scheduler runs them in a deployment (docs/scheduler.md).

`batchline local up` renders the jobs (batchline.local.schedule_config) and starts this process
(`python -m batchline.local.scheduler --state-dir D --port P`); `down` stops it and heal/supervise
restart it like the other services. Each job fires on its cron in its time zone (batchline.local.cron)
and runs one execution at a time (batchline.local.scheduler_runs.execute, retries included); a fire
time that comes while the job's previous execution is still retrying is skipped and counted, as
Google says a retrying job may skip its next scheduled time. Targets are looked up in the stack's
state at every attempt, so a function healed onto a new port is still reached.

`GET /` on its port answers the plan (200 while the loop ticks, 503 if it has stalled): the stack's
health check for this process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from batchline.local import cron, schedule_config
from batchline.local import scheduler_runs as runs
from batchline.logs import log_event

TICK_S = 0.5
PLAN_EVERY_S = 5.0
STALLED_AFTER_S = 10.0


def target_url(state_dir: Path | str, function: str, path: str) -> Callable[[], str]:
    """The job's URL as the stack records it now (LookupError if the stack or function is gone)."""
    def url() -> str:
        # imported when first asked: the stack's record brings the GCP clients, which this process,
        # started at every `up`, does not otherwise need before its first execution
        from batchline.local.stack_record import load

        info = load(state_dir)
        if info is None or function not in info.services:
            raise LookupError(f"the local stack in {state_dir} has no {function} running")
        return info.url(function) + path
    return url


class Scheduler:
    def __init__(self, state_dir: Path, schedules: schedule_config.LocalSchedules, now: dt.datetime) -> None:
        self.state_dir = state_dir
        self.jobs = [lj.job for lj in schedules.jobs if not lj.paused]
        self.next_at = {j.key: cron.next_fire(j.cron, j.time_zone, now) for j in self.jobs}
        self.running: dict[str, threading.Thread] = {}
        self.last_tick = time.monotonic()
        self._planned = 0.0
        self._skipped: dict[str, int] = {}

    def tick(self, now: dt.datetime) -> None:
        """Start every job that is due (unless its previous execution still runs) and plan the next."""
        self.last_tick = time.monotonic()
        changed = False
        for job in self.jobs:
            when, missed, self.next_at[job.key] = cron.due(job.cron, job.time_zone, self.next_at[job.key], now)
            if when is None:
                continue
            changed = True
            busy = self.running.get(job.key)
            skipped = missed + (1 if busy is not None and busy.is_alive() else 0)
            if skipped:
                self._skipped[job.key] = self._skipped.get(job.key, 0) + skipped
                log_event("scheduler_skipped", severity="WARNING", scheduler_job=job.name, skipped=skipped,
                          schedule_time=when.isoformat(), message="fire times skipped: the previous execution "
                          "was still running, or the scheduler was not (missed times are not run late)")
            if busy is not None and busy.is_alive():
                continue
            thread = threading.Thread(target=self._execute, args=(job, when), name=job.key, daemon=True)
            self.running[job.key] = thread
            thread.start()
        if changed or time.monotonic() - self._planned > PLAN_EVERY_S:
            runs.record_plan(self.state_dir, {k: v.isoformat() for k, v in self.next_at.items()}, self._skipped)
            self._skipped, self._planned = {}, time.monotonic()

    def _execute(self, job, when: dt.datetime) -> None:
        runs.execute(job, target_url(self.state_dir, job.function, job.path), when,
                     on_update=lambda ex: runs.record(self.state_dir, ex))

    def plan(self) -> dict:
        return {"healthy": time.monotonic() - self.last_tick < STALLED_AFTER_S,
                "next_fire": {k: v.isoformat() for k, v in self.next_at.items()},
                "running": sorted(k for k, t in self.running.items() if t.is_alive())}


def serve_health(port: int, scheduler: Scheduler) -> ThreadingHTTPServer:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            plan = scheduler.plan()
            body = json.dumps(plan).encode()
            self.send_response(200 if plan["healthy"] else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # the health checks would flood the log
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state-dir", required=True, type=Path)
    ap.add_argument("--port", required=True, type=int)
    args = ap.parse_args(argv)
    schedules = schedule_config.read(args.state_dir)
    if schedules is None:
        raise SystemExit(f"no {schedule_config.JOBS_FILE} in {args.state_dir}: `batchline local up` writes it")
    runs.mark_interrupted(args.state_dir)
    scheduler = Scheduler(args.state_dir, schedules, dt.datetime.now(dt.UTC))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = serve_health(args.port, scheduler)
    log_event("scheduler_started", stack=schedules.stack, jobs=schedule_config.describe(schedules),
              next_fire={k: v.isoformat() for k, v in scheduler.next_at.items()})
    while not stop.is_set():
        scheduler.tick(dt.datetime.now(dt.UTC))
        stop.wait(TICK_S)
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
