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

from batchline import faults as faults_mod
from batchline import ids
from batchline.ledger import Ledger, compute
from batchline.local import stack as local_stack
from batchline.local.provision import seed_context, synthetic_context
from batchline.state import TERMINAL_STATUSES, BatchStore

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
local_app = typer.Typer(help="Start, stop and check the local stack (emulators + functions).", no_args_is_help=True)
app.add_typer(local_app, name="local")
console = Console(stderr=True)
out = Console()

STATE_DIR_OPT = typer.Option(local_stack.DEFAULT_STATE_DIR, "--state-dir", help="Where pids, ports and logs live.")


@local_app.command("up")
def local_up(state_dir: Path = STATE_DIR_OPT,
             threads: int = typer.Option(4, min=1, max=64, help="Per-instance concurrency of each function."),
             max_delivery_attempts: int = typer.Option(local_stack.LOCAL_MAX_DELIVERY_ATTEMPTS, min=5,
                                                       max=100)) -> None:
    """Start (or reuse) the local stack."""
    with console.status("starting emulators and functions"):
        info = local_stack.up(state_dir, threads=threads, max_delivery_attempts=max_delivery_attempts)
    _print_status(state_dir)
    out.print("export " + " ".join(f"{k}={v}" for k, v in info.client_env().items()), soft_wrap=True)


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
            batch = store.get_batch(batch_id) or {}
            counts = {s: store.count_items(batch_id, s) for s in ("completed", "failed")}
            done = counts["completed"] + counts["failed"]
            terminal = batch.get("status") in TERMINAL_STATUSES
            progress.update(task, completed=done + terminal,
                            detail=f"completed {counts.get('completed', 0)} failed {counts.get('failed', 0)} "
                                   f"| batch {batch.get('status')}")
            if terminal:
                return batch
            if time.monotonic() > deadline:
                console.print(f"[red]timed out after {timeout_s:.0f}s; batch is {batch.get('status')}")
                return batch
            time.sleep(0.5)


def print_ledger(ledger: Ledger) -> None:
    table = Table(title=f"loss ledger - batch {ledger.batch_id} ({ledger.game_date})", show_header=False)
    rows = [
        ("batch status", ledger.batch_status),
        ("expected items", ledger.expected_items),
        ("merged items", ledger.merged_items),
        ("dead-lettered items", f"{ledger.dead_lettered_items} {ledger.dead_lettered_ids[:10] or ''}"),
        ("missing items", f"{len(ledger.missing_items)} {ledger.missing_items[:20] or ''}"),
        ("merged rows", ledger.merged_rows),
        ("duplicate rows", ledger.duplicate_rows),
        ("staging tables left", ledger.staging_tables_left),
        ("mutating DML on main table", ledger.main_table_mutating_dml),
        ("elapsed", f"{ledger.elapsed_s:.1f} s"),
        ("verdict", "[green]OK: nothing lost silently" if ledger.ok else "[red]" + "; ".join(ledger.problems)),
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
        spec = faults_mod.parse(faults, seed=seed).to_spec() if faults else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    started_here = not local_stack.is_up(state_dir)
    t0 = time.monotonic()
    with console.status("starting the local stack (Pub/Sub, Firestore, BigQuery emulators + 3 functions)"):
        info = local_stack.up(state_dir)
    try:
        clients = info.activate()
        console.print(f"stack ready in {time.monotonic() - t0:.1f}s; seeding {players} players for {day}")
        seed_context(clients.bq, clients.settings, day, synthetic_context(day, players, seed))
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
        if started_here and not keep_stack:
            local_stack.down(state_dir)
    print_ledger(ledger)
    if json_path:
        json_path.write_text(ledger.to_json())
    raise typer.Exit(0 if ledger.ok else 1)


@app.command()
def ledger(batch_id: str, json_path: Path = typer.Option(None, "--json"), state_dir: Path = STATE_DIR_OPT) -> None:
    """Recompute the loss ledger of a batch on the running local stack."""
    info = local_stack.load(state_dir)
    if info is None or not local_stack.is_up(state_dir):
        console.print("[red]no running local stack; start one with `batchline local up`")
        raise typer.Exit(2)
    result = compute(info.activate(), ids.validate_batch_id(batch_id), 0.0)
    print_ledger(result)
    if json_path:
        json_path.write_text(result.to_json())
    raise typer.Exit(0 if result.ok else 1)


# Operator commands over the control path (start, status, audit, consolidate, reconcile, redispatch, dlq).
from batchline.ops.commands import register as _register_ops  # noqa: E402

_register_ops(app)


def main() -> None:  # pragma: no cover - console entry for `python -m batchline.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

