"""Human output (rich tables on stdout, progress on stderr) and `--json` output (stdout only)."""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from batchline.adapters.batch_store import BatchStore
from batchline.domain.statuses import TERMINAL_STATUSES

console = Console(stderr=True)
out = Console()

EXIT_OK, EXIT_PROBLEM, EXIT_BAD_INPUT = 0, 1, 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    console.print(f"[red]{message}")
    return typer.Exit(code)


def emit_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def _cell(v: object) -> str:
    """A value as table text: never a Python repr (a record inside a list reads `(k=v, k=v)`)."""
    if isinstance(v, list):
        if not v:
            return "-"
        parts = [f"({_cell(x)})" if isinstance(x, dict) else _cell(x) for x in v[:15]]
        return f"{len(v)}: " + ", ".join(parts) + (" ..." if len(v) > 15 else "")
    if isinstance(v, dict):
        return ", ".join(f"{k}={_cell(x)}" for k, x in v.items()) or "-"
    return "-" if v is None else str(v)


def _is_records(v: object) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _columns(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def key_values(title: str, rows: dict) -> None:
    """One table of name -> value; a value that is a list of records (replayed messages, repair
    batches...) is shown as a table of its own below, one row per record."""
    table = Table(title=title, show_header=False)
    below = {k: v for k, v in rows.items() if _is_records(v)}
    for k, v in rows.items():
        table.add_row(k, f"{len(v)} (table below)" if k in below else _cell(v))
    out.print(table)
    for k, v in below.items():
        records(k, _columns(v), v)


def records(title: str, columns: list[str], rows: list[dict]) -> None:
    table = Table(*columns, title=title)
    for r in rows:
        table.add_row(*(_cell(r.get(c)) for c in columns))
    out.print(table if rows else f"{title}: none")


def wait_batch(fs, batch_id: str, timeout_s: float, *, expected: int | None = None, title: str | None = None
               ) -> dict:
    """Poll a batch to a terminal status with a progress bar of its items plus the consolidation step
    (the bar is full only when the batch is); returns the batch as last read. `--wait` counts the
    batch's own items; `batchline run` names the items it dispatched (`expected`) and a `title`, and is
    told of a timeout."""
    store = BatchStore(fs)
    deadline = time.monotonic() + timeout_s
    of_run = expected is not None
    total = expected if of_run else int((store.get_batch(batch_id) or {}).get("expected_items") or 0)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(title or f"batch {batch_id}", total=total + 1, detail="")
        while True:
            batch = store.get_batch(batch_id) or {"batch_id": batch_id}
            counted = expected if of_run else int(batch.get("expected_items") or 0)
            done = min(store.terminal_count(batch), counted)  # shards over-count a completion after a failure
            terminal = batch.get("status") in TERMINAL_STATUSES
            progress.update(task, completed=done + terminal,
                            detail=f"items done {done} | {'batch ' if of_run else ''}{batch.get('status')}")
            if terminal:
                return batch
            if time.monotonic() > deadline:
                if of_run:
                    console.print(f"[red]timed out after {timeout_s:.0f}s; batch is {batch.get('status')}")
                return batch
            time.sleep(0.5)
