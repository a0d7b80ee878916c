"""`batchline`: run a real batch through the local stack and print its loss ledger; manage the stack."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import requests
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from batchline.adapters.batch_store import BatchStore
from batchline.domain import faults as faults_mod
from batchline.domain import ids
from batchline.domain.statuses import TERMINAL_STATUSES
from batchline.flows.ledger import Ledger, compute
from batchline.local import emulators, schedule_config
from batchline.local import stack as local_stack
from batchline.local.chaos_cmd import chaos_command
from batchline.local.provision import seed_context, synthetic_context
from batchline.local.seed_cmd import seed_command
from batchline.ops.target import TargetError, resolve

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
local_app = typer.Typer(help="Start, stop and check the local stack (emulators + functions).", no_args_is_help=True)
app.add_typer(local_app, name="local")
app.command("chaos")(chaos_command)
local_app.command("seed")(seed_command)
console = Console(stderr=True)
out = Console()

STATE_DIR_OPT = typer.Option(local_stack.DEFAULT_STATE_DIR, "--state-dir", help="Where pids, ports and logs live.")


@local_app.command("up")
def local_up(state_dir: Path = STATE_DIR_OPT,
             threads: int = typer.Option(4, min=1, max=64, help="Per-instance concurrency of each function."),
             max_delivery_attempts: int = typer.Option(local_stack.LOCAL_MAX_DELIVERY_ATTEMPTS, min=5, max=100),
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
        info, report = _up(state_dir, threads=threads, max_delivery_attempts=max_delivery_attempts,
                           schedules=schedules)
    _print_report(report)
    _print_status(state_dir)
    if schedules is not None:
        from batchline.local.scheduler_runs import read
        from batchline.local.schedules_cmd import schedules_table

        out.print(schedules_table(schedules, read(state_dir), dt.datetime.now(dt.UTC)))
    out.print("export " + " ".join(f"{k}={v}" for k, v in info.client_env().items()), soft_wrap=True)
    if supervise:
        local_supervise(state_dir, interval)


@local_app.command("supervise")
def local_supervise(state_dir: Path = STATE_DIR_OPT,
                    interval: float = typer.Option(2.0, min=0.2, help="Seconds between checks.")) -> None:
    """Watch the running stack and restart what dies (functions freely; a dead emulator with a WARNING
    that its state is gone), until `batchline local down` or Ctrl-C."""
    from batchline.local.heal import supervise

    console.print(f"supervising the stack in {state_dir} every {interval:g} s (Ctrl-C to stop)")
    try:
        restarts = supervise(state_dir, interval, notify=_notify)
    except KeyboardInterrupt:
        console.print("supervision stopped; the stack keeps running")
        return
    console.print(f"supervision ended after {restarts} restart(s)")


def _up(state_dir: Path, **kwargs) -> tuple[local_stack.StackInfo, local_stack.UpReport]:
    from batchline.local.heal import StackUnhealthy

    try:
        return local_stack.up_with_report(state_dir, notify=_notify, **kwargs)
    except StackUnhealthy as exc:
        console.print(f"[bold red]{exc}", soft_wrap=True)
        raise typer.Exit(1) from exc


def _notify(message: str) -> None:
    console.print(("[bold red]" if message.startswith("WARNING") else "[yellow]") + message, soft_wrap=True)


def _print_report(report: local_stack.UpReport) -> None:
    for label, names in (("started", report.started), ("reused", report.reused),
                         ("restarted", report.restarted), ("stopped", report.stopped)):
        if names:
            console.print(f"{label}: {', '.join(names)}")
    if report.state_lost:
        console.print(f"[bold red]WARNING: state lost with the restart of: {', '.join(report.state_lost)}")


@local_app.command("down")
def local_down(state_dir: Path = STATE_DIR_OPT) -> None:
    """Stop every process the stack recorded."""
    stopped = local_stack.down(state_dir)
    out.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@local_app.command("status")
def local_status(state_dir: Path = STATE_DIR_OPT) -> None:
    """Show each process, and exit 1 unless all answer."""
    _print_status(state_dir)
    raise typer.Exit(0 if local_stack.is_up(state_dir) else 1)


def _print_status(state_dir: Path) -> None:
    st = local_stack.status(state_dir)
    table = Table("service", "pid", "url", "alive", "answering", "log")
    for name, s in st.items():
        table.add_row(name, str(s["pid"]), s["url"], str(s["alive"]), str(s["answering"]), s["log"])
    out.print(table if st else "no local stack recorded in " + str(state_dir))


def _wait(clients, batch_id: str, expected: int, timeout_s: float) -> dict:
    store = BatchStore(clients.fs)
    deadline = time.monotonic() + timeout_s
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        # the last step is the consolidation: the bar is full only when the batch is
        task = progress.add_task("items + merge", total=expected + 1, detail="")
        while True:
            batch = store.get_batch(batch_id) or {"batch_id": batch_id}
            done = min(store.terminal_count(batch), expected)  # shards over-count a completion after a failure
            terminal = batch.get("status") in TERMINAL_STATUSES
            progress.update(task, completed=done + terminal, detail=f"items done {done} | batch {batch.get('status')}")
            if terminal:
                return batch
            if time.monotonic() > deadline:
                console.print(f"[red]timed out after {timeout_s:.0f}s; batch is {batch.get('status')}")
                return batch
            time.sleep(0.5)


def _ids(ids_: list[str], limit: int = 10) -> str:
    return "" if not ids_ else " " + ", ".join(ids_[:limit]) + (" ..." if len(ids_) > limit else "")


def print_ledger(ledger: Ledger) -> None:
    table = Table(title=f"loss ledger - batch {ledger.batch_id} ({ledger.game_date})", show_header=False)
    parts = ledger.merged_items + ledger.dead_lettered_items + len(ledger.incomplete_ids) + len(ledger.missing_items)
    colour = "red" if not ledger.ok else "green" if ledger.complete else "yellow"
    rows = [
        ("batch status", ledger.batch_status),
        ("expected items", ledger.expected_items),
        ("merged items", ledger.merged_items),
        ("  of which recovered", f"{ledger.recovered_items}{_ids(ledger.recovered_ids)}"),
        ("dead-lettered items (not merged)", f"{ledger.dead_lettered_items}{_ids(ledger.dead_lettered_ids)}"),
        ("incomplete items (rows short)", f"{len(ledger.incomplete_ids)}{_ids(sorted(ledger.incomplete_ids))}"),
        ("missing items", f"{len(ledger.missing_items)}{_ids(ledger.missing_items, 20)}"),
        ("merged + dead-lettered + incomplete + missing", f"{parts} (= expected)"),
        ("coverage", f"{ledger.coverage_pct:.1f} % (warning below {ledger.coverage_warning_pct:g} %)"),
        ("merged rows", ledger.merged_rows),
        ("duplicate rows", ledger.duplicate_rows),
        ("staging table left", f"{ledger.staging_tables_left}" + (
            f" (kept on purpose: {ledger.staging_kept_reason})" if ledger.staging_kept_reason else "")),
        ("this batch's DML on main table", ledger.main_table_mutating_dml),
        ("all DML on main table meanwhile", ledger.main_table_mutating_dml_window),
        ("elapsed", f"{ledger.elapsed_s:.1f} s"),
        ("verdict", f"[{colour}]{ledger.verdict}"),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    out.print(table)


@app.command()
def run(players: int = typer.Option(450, min=1, max=5000, help="Synthetic players to seed (one item each)."),
        game_date: str = typer.Option(None, help="YYYY-MM-DD; default today (UTC)."),
        faults: str = typer.Option(None, help="e.g. staging_write=0.3,completion_publish=0.1,poison=player_0007"),
        seed: int = typer.Option(0, help="Seed of the synthetic context and of the fault draws."),
        json_path: Path = typer.Option(None, "--json", help="Also write the ledger as JSON here."),
        keep_stack: bool = typer.Option(False, help="Leave a stack this command started running."),
        force: bool = typer.Option(False, help="Re-run a date whose batch is still active."),
        timeout_s: float = typer.Option(1800, "--timeout", help="Give up waiting after this many seconds."),
        state_dir: Path = STATE_DIR_OPT) -> None:
    """Run one batch through the local stack and print its loss ledger. Exit 0 only if nothing was lost."""
    try:
        day = ids.parse_game_date(game_date) if game_date else dt.datetime.now(dt.UTC).date()
        context = synthetic_context(day, players, seed)
        injected = faults_mod.parse(faults, seed=seed)  # before anything starts: the items are known here
        faults_mod.check_items(injected, [r["player_lookup"] for r in context], f"a run of {players} players")
        spec = injected.to_spec() if faults else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    t0 = time.monotonic()
    with console.status("starting (or reusing) the local stack (Pub/Sub, Firestore, BigQuery emulators + 3 "
                        "functions)"):
        info, report = _up(state_dir, ephemeral=not keep_stack, user=True)
    _print_report(report)
    try:
        clients = info.activate()
        console.print(f"stack ready in {time.monotonic() - t0:.1f}s; seeding {players} players for {day}")
        seed_context(clients.bq, clients.settings, day, context)
        t_start = time.monotonic()
        resp = requests.post(info.url("coordinator") + "/start", timeout=120,
                             json={"game_date": day.isoformat(), "force": force, "faults": spec})
        if resp.status_code != 200:
            console.print(f"[red]start refused ({resp.status_code}): {resp.text}")
            raise typer.Exit(2)
        started = resp.json()
        console.print(f"batch {started['batch_id']}: {started['expected_items']} items dispatched"
                      + (f" (faults: {spec})" if spec else ""))
        _wait(clients, started["batch_id"], started["expected_items"], timeout_s)
        ledger = compute(clients, started["batch_id"], time.monotonic() - t_start)
    finally:
        # stops the stack only if a run without --keep-stack started it and no other run still uses it
        stopped = local_stack.release(state_dir)
        if stopped:
            console.print(f"stopped the stack this run started: {', '.join(stopped)}")
    print_ledger(ledger)
    if json_path:
        json_path.write_text(ledger.to_json())
    raise typer.Exit(0 if ledger.ok else 1)


@app.command()
def ledger(batch_id: str, json_path: Path = typer.Option(None, "--json"), state_dir: Path = STATE_DIR_OPT,
           project: str = typer.Option(None, "--project", help="A deployment in this GCP project (ADC)."),
           stack_outputs: Path = typer.Option(None, "--stack-outputs", help="JSON of `pulumi stack output --json`."),
           setting: list[str] = typer.Option(None, "--setting", help="KEY=VALUE of batchline.settings.Settings.")
           ) -> None:
    """Recompute the loss ledger of a batch, on the running local stack or on a deployment (an operator
    needs what infra/access.py OPERATOR_ACCESS grants: docs/deploy.md, "Operators")."""
    if project is None and stack_outputs is None:
        info = local_stack.load(state_dir)
        st = local_stack.status(state_dir)
        # the ledger reads the emulators only: a dead function does not stop it
        if info is None or not all(st.get(n, {}).get("answering") for n in emulators.EMULATORS):
            console.print("[red]no running local stack (its emulators must answer); "
                          "start one with `batchline local up`")
            raise typer.Exit(2)
        clients = info.activate()
    else:
        try:
            clients = resolve(state_dir, project, stack_outputs, None, setting)
        except TargetError as exc:
            console.print(str(exc), style="red", markup=False)
            raise typer.Exit(2) from None
    result = compute(clients, ids.validate_batch_id(batch_id), 0.0)
    print_ledger(result)
    if json_path:
        json_path.write_text(result.to_json())
    raise typer.Exit(0 if result.ok else 1)


# Operator commands over the control path (start, status, audit, consolidate, reconcile, redispatch, dlq).
from batchline.ops.commands import register as _register_ops  # noqa: E402

_register_ops(app)

from batchline.local.schedules_cmd import register as _register_schedules  # noqa: E402

_register_schedules(local_app)


def main() -> None:  # pragma: no cover - console entry for `python -m batchline.ops.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

