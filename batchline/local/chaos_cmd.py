"""`batchline chaos`: many random fault schedules on the local stack, a summary table and JSON."""

from __future__ import annotations

import json
import random
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from batchline.local import chaos
from batchline.local import stack as local_stack

console = Console(stderr=True)
out = Console()


def chaos_command(schedules: int = typer.Option(20, "--schedules", min=1, max=chaos.MAX_SCHEDULES,
                                               help="How many schedules."),
                  seed: int = typer.Option(0, help="Seed of the schedule generator (same seed, same schedules)."),
                  json_path: Path = typer.Option(None, "--json", help="Write every outcome and the summary here."),
                  state_dir: Path = typer.Option(local_stack.DEFAULT_STATE_DIR, "--state-dir")) -> None:
    """Run random fault schedules over small batches and judge each from the systems of record.
    Exit 1 if any item was lost silently, any row duplicated or any batch merged twice."""
    info = local_stack.up(state_dir)
    clients = info.activate()
    rng = random.Random(seed)
    offset = chaos.block_start(rng, schedules)  # a block of game dates of its own for this run
    outcomes = []
    with Progress(console=console) as progress:
        task = progress.add_task("schedules", total=schedules)
        for n in range(schedules):
            sched = chaos.draw(rng, offset + n)
            outcome = chaos.run_schedule(local_stack.load(state_dir) or info, clients, sched)
            outcomes.append(outcome)
            if outcome.problems:
                console.print(f"[red]schedule {n}: {'; '.join(outcome.problems)}[/red]")
            if json_path:  # after every schedule, so a long run that is stopped still leaves its figures
                _write(json_path, seed, outcomes)
            progress.advance(task)
    summary = chaos.summarize(outcomes)
    table = Table("figure", "value", title=f"chaos: {schedules} schedules, seed {seed}")
    for key, value in summary.items():
        table.add_row(key.replace("_", " "), json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    out.print(table)
    if json_path:
        _write(json_path, seed, outcomes)
    bad = summary["items_lost"] or summary["duplicate_rows"] or summary["max_successful_merges_per_batch"] > 1 \
        or summary["failed_schedules"]
    raise typer.Exit(1 if bad else 0)


def _write(path: Path, seed: int, outcomes: list) -> None:
    path.write_text(json.dumps({"seed": seed, "summary": chaos.summarize(outcomes),
                                "outcomes": [o.as_dict() for o in outcomes]}, indent=2, default=str))
