"""`batchline local schedules` and `batchline local trigger`: what the local scheduler runs, when it
fires next and what its last executions answered; and one job fired now, retries included."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from batchline.local import cron, schedule_config
from batchline.local import scheduler_runs as runs
from batchline.local.scheduler import target_url
from batchline.ops.options import STATE_DIR
from batchline.ops.render import console, out


def _jobs(state_dir: Path) -> schedule_config.LocalSchedules:
    try:
        schedules = schedule_config.read(state_dir)
    except schedule_config.ScheduleConfigError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from exc
    if schedules is None:
        console.print(f"[red]the stack in {state_dir} runs no scheduler: `batchline local up` starts one "
                      "(with the jobs of `--stack dev` unless told otherwise)")
        raise typer.Exit(2)
    return schedules


def _when(iso: str | None, zone: str) -> str:
    if not iso:
        return "-"
    t = dt.datetime.fromisoformat(iso)
    return f"{t.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M %Z} ({t.astimezone(dt.UTC):%H:%M}Z)"


def _last(record: dict) -> tuple[str, str]:
    runs_ = record.get("executions") or []
    if not runs_:
        return "never ran", ""
    last = runs_[-1]
    tries = last["attempts"]
    detail = tries[-1]["detail"] if tries else ""
    return (f"{last['outcome']} ({last['trigger']}, {_when(last['schedule_time'], 'UTC')})",
            f"{len(tries)}: {detail}"[:120])


def schedules_table(schedules: schedule_config.LocalSchedules, state: dict, now: dt.datetime) -> Table:
    table = Table("job", "cron", "time zone", "next fire", "last result", "attempts: last answer", "retry",
                  title=f"scheduled jobs of stack {schedules.stack} (locally: no OIDC token)")
    for lj in schedules.jobs:
        j, r = lj.job, lj.job.retry
        record = state["jobs"].get(j.key, {})
        if lj.paused:
            cron_text, nxt = f"off (override; configured {j.cron})", "paused"
        else:
            cron_text = f"{j.cron} (override; configured {lj.configured_cron})" if lj.overridden else j.cron
            nxt = _when(cron.next_fire(j.cron, j.time_zone, now).isoformat(), j.time_zone)
        last, attempts = _last(record)
        if record.get("skipped"):
            last += f"; {record['skipped']} fire time(s) skipped"
        table.add_row(j.key, cron_text, j.time_zone, nxt, last, attempts,
                      f"{r.retry_count} x {r.min_backoff_s}-{r.max_backoff_s} s, {r.max_doublings} doublings, "
                      f"deadline {r.attempt_deadline_s} s")
    return table


def local_schedules(state_dir: Path = STATE_DIR) -> None:
    """Each scheduled job: cron (and override), time zone, next fire time, last result and attempts."""
    out.print(schedules_table(_jobs(state_dir), runs.read(state_dir), dt.datetime.now(dt.UTC)))


def local_trigger(name: str = typer.Argument(..., help="The job: start, stall-check or reconcile."),
                  state_dir: Path = STATE_DIR) -> None:
    """Fire one job now, as the scheduler does (same request, same retries). Exit 0 if it succeeded,
    1 if it was refused (a 2xx saying so) or failed."""
    schedules = _jobs(state_dir)
    try:
        job = schedules.find(name).job
    except schedule_config.ScheduleConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc

    def show(ex: runs.Execution) -> None:
        runs.record(state_dir, ex)
        if ex.attempts and ex.outcome == runs.RUNNING:
            a = ex.attempts[-1]
            console.print(f"[yellow]attempt {a.number} failed: {a.detail} (retrying after its backoff)")

    ex = runs.execute(job, target_url(state_dir, job.function, job.path), dt.datetime.now(dt.UTC),
                      trigger="manual", on_update=show, log=lambda *a, **k: None)
    a = ex.attempts[-1]
    colour = {runs.SUCCEEDED: "green", runs.REFUSED: "yellow"}.get(ex.outcome, "red")
    out.print(f"[{colour}]{job.name}: {ex.outcome} after {len(ex.attempts)} attempt(s): {a.detail}")
    raise typer.Exit(0 if ex.outcome == runs.SUCCEEDED else 1)
