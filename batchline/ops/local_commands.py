"""`batchline local up / supervise / down / status / seed`: the local stack (batchline.local.stack)
started, watched, stopped, shown, and given context rows to run.

`local seed DATE` loads synthetic context rows for a date into the local stack's context table, so
that `batchline start DATE` (or the scheduled start) has a schedule to run. On a deployment the
context table belongs to the upstream loader (docs/deploy.md, "The context table"); the command
refuses a deployment target rather than write made-up players there.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer
from rich.table import Table

from batchline.domain import ids
from batchline.local import heal, schedule_config
from batchline.local import stack as local_stack
from batchline.local.provision import seed_context, synthetic_context
from batchline.local.scheduler_runs import read as read_scheduler_runs
from batchline.local.stack_record import DEFAULT_STATE_DIR, LOCAL_MAX_DELIVERY_ATTEMPTS, StackInfo, UpReport
from batchline.ops import render
from batchline.ops.options import STATE_DIR
from batchline.ops.render import console, out
from batchline.ops.schedule_commands import schedules_table
from batchline.ops.target import TargetError, resolve

DEPLOYMENT_REFUSED = ("`batchline local seed` writes synthetic players into the local stack only; on a deployment "
                      "the context table is your upstream loader's (rows of game_date, player_lookup, game_id "
                      "and loaded_at: docs/deploy.md, \"The context table\")")

REFUSED_HELP = "Refused: a deployment's loader owns its context table."


def local_up(state_dir: Path = STATE_DIR,
             threads: int = typer.Option(4, min=1, max=64, help="Per-instance concurrency of each function."),
             max_delivery_attempts: int = typer.Option(LOCAL_MAX_DELIVERY_ATTEMPTS, min=5, max=100),
             supervise: bool = typer.Option(False, "--supervise",
                                            help="Then keep watching and restart whatever dies (Ctrl-C to stop)."),
             interval: float = typer.Option(2.0, min=0.2, help="Seconds between supervision checks."),
             stack: str = typer.Option("dev", help="Run the scheduled jobs of this stack (Pulumi.<stack>.yaml)."),
             schedule: list[str] = typer.Option([], "--schedule", help="Override a job's cron locally: "
                                                "NAME=CRON (e.g. stall-check='* * * * *') or NAME=off."),
             schedule_file: Path = typer.Option(None, help="Overrides from a YAML/JSON file {name: cron}."),
             no_scheduler: bool = typer.Option(False, "--no-scheduler", help="Run no scheduled jobs.")) -> None:
    """Start the local stack, or reuse it: only dead processes are restarted (an emulator restarted
    that way lost its state, which is printed as a WARNING). The scheduler runs the stack's Cloud
    Scheduler jobs (`batchline local schedules` lists them)."""
    try:
        schedules = None if no_scheduler else schedule_config.load(
            stack, schedule_config.parse_overrides(schedule, schedule_file))
    except schedule_config.ScheduleConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with console.status("starting (or checking) emulators, functions and the scheduler"):
        info, report = up_or_exit(state_dir, threads=threads, max_delivery_attempts=max_delivery_attempts,
                                  schedules=schedules)
    print_up_report(report)
    _print_status(state_dir)
    if schedules is not None:
        out.print(schedules_table(schedules, read_scheduler_runs(state_dir), dt.datetime.now(dt.UTC)))
    out.print("export " + " ".join(f"{k}={v}" for k, v in info.client_env().items()), soft_wrap=True)
    if supervise:
        local_supervise(state_dir, interval)


def local_supervise(state_dir: Path = STATE_DIR,
                    interval: float = typer.Option(2.0, min=0.2, help="Seconds between checks.")) -> None:
    """Watch the running stack and restart what dies (functions freely; a dead emulator with a WARNING
    that its state is gone), until `batchline local down` or Ctrl-C."""
    console.print(f"supervising the stack in {state_dir} every {interval:g} s (Ctrl-C to stop)")
    try:
        restarts = heal.supervise(state_dir, interval, notify=_notify)
    except KeyboardInterrupt:
        console.print("supervision stopped; the stack keeps running")
        return
    console.print(f"supervision ended after {restarts} restart(s)")


def up_or_exit(state_dir: Path, **kwargs) -> tuple[StackInfo, UpReport]:
    """`stack.up_with_report`, saying what it changed; exit 1 if an emulator runs but does not answer."""
    try:
        return local_stack.up_with_report(state_dir, notify=_notify, **kwargs)
    except heal.StackUnhealthy as exc:
        console.print(f"[bold red]{exc}", soft_wrap=True)
        raise typer.Exit(1) from exc


def _notify(message: str) -> None:
    console.print(("[bold red]" if message.startswith("WARNING") else "[yellow]") + message, soft_wrap=True)


def print_up_report(report: UpReport) -> None:
    for label, names in (("started", report.started), ("reused", report.reused),
                         ("restarted", report.restarted), ("stopped", report.stopped)):
        if names:
            console.print(f"{label}: {', '.join(names)}")
    if report.state_lost:
        console.print(f"[bold red]WARNING: state lost with the restart of: {', '.join(report.state_lost)}")


def local_down(state_dir: Path = STATE_DIR) -> None:
    """Stop every process the stack recorded."""
    stopped = local_stack.down(state_dir)
    out.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def local_status(state_dir: Path = STATE_DIR) -> None:
    """Show each process, and exit 1 unless all answer."""
    _print_status(state_dir)
    raise typer.Exit(0 if local_stack.is_up(state_dir) else 1)


def _print_status(state_dir: Path) -> None:
    st = local_stack.status(state_dir)
    table = Table("service", "pid", "url", "alive", "answering", "log")
    for name, s in st.items():
        table.add_row(name, str(s["pid"]), s["url"], str(s["alive"]), str(s["answering"]), s["log"])
    out.print(table if st else "no local stack recorded in " + str(state_dir))


def local_seed(game_date: str = typer.Argument(..., help="YYYY-MM-DD"),
               players: int = typer.Option(450, min=1, max=5000, help="Synthetic players (one item each)."),
               seed: int = typer.Option(0, help="Seed of the synthetic schedule (which game each player is in)."),
               as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
               state_dir: Path = typer.Option(DEFAULT_STATE_DIR, "--state-dir"),
               project: str = typer.Option(None, "--project", help=REFUSED_HELP),
               stack_outputs: Path = typer.Option(None, "--stack-outputs", help=REFUSED_HELP)) -> None:
    """Replace a date's rows in the local context table with N synthetic players, stamped loaded_at now."""
    if project is not None or stack_outputs is not None:
        raise render.fail(DEPLOYMENT_REFUSED)
    try:
        day = ids.parse_game_date(game_date)
        clients = resolve(state_dir, None, None, None, None)
    except (ValueError, TargetError) as exc:
        raise render.fail(str(exc)) from None
    s = clients.settings
    if not s.bigquery_emulator_host:  # cannot happen for a stack `batchline local up` recorded
        raise render.fail(DEPLOYMENT_REFUSED)
    rows = synthetic_context(day, players, seed)
    seed_context(clients.bq, s, day, rows)
    result = {"game_date": day.isoformat(), "context_table": s.context_table_id, "rows": len(rows),
              "first_item": rows[0]["player_lookup"], "last_item": rows[-1]["player_lookup"], "seed": seed}
    if as_json:
        render.emit_json(result)
    else:
        render.key_values(f"seeded {len(rows)} context rows for {day}", result)
        out.print(f"next: `batchline start {day}`")
