"""Human output (rich tables on stdout, progress on stderr) and `--json` output (stdout only)."""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from batchline.lifecycle import TERMINAL_STATUSES
from batchline.state import BatchStore

console = Console(stderr=True)
out = Console()

EXIT_OK, EXIT_PROBLEM, EXIT_BAD_INPUT = 0, 1, 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    console.print(f"[red]{message}")
    return typer.Exit(code)


def emit_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def _cell(v: object) -> str:
    if isinstance(v, list):
        return f"{len(v)}: " + ", ".join(str(x) for x in v[:15]) + (" ..." if len(v) > 15 else "") if v else "-"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_cell(x)}" for k, x in v.items()) or "-"
    return "-" if v is None else str(v)


def key_values(title: str, rows: dict) -> None:
    table = Table(title=title, show_header=False)
    for k, v in rows.items():
        table.add_row(k, _cell(v))
    out.print(table)


def records(title: str, columns: list[str], rows: list[dict]) -> None:
    table = Table(*columns, title=title)
    for r in rows:
        table.add_row(*(_cell(r.get(c)) for c in columns))
    out.print(table if rows else f"{title}: none")


def wait_batch(fs, batch_id: str, timeout_s: float) -> dict:
    """Poll a batch to a terminal status with a progress bar (items + the consolidation step)."""
    store = BatchStore(fs)
    deadline = time.monotonic() + timeout_s
    batch = store.get_batch(batch_id) or {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"batch {batch_id}", total=int(batch.get("expected_items") or 0) + 1, detail="")
        while True:
            batch = store.get_batch(batch_id) or {"batch_id": batch_id}
            done = min(store.terminal_count(batch), int(batch.get("expected_items") or 0))
            terminal = batch.get("status") in TERMINAL_STATUSES
            progress.update(task, completed=done + terminal, detail=f"items done {done} | {batch.get('status')}")
            if terminal or time.monotonic() > deadline:
                return batch
            time.sleep(0.5)
