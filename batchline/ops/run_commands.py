"""`batchline run / ledger / chaos`: a real batch through the local stack and its loss ledger; the
ledger of any batch again; many random fault schedules, each judged from the systems of record."""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from pathlib import Path

import requests
import typer
from rich.progress import Progress
from rich.table import Table

from batchline.domain import faults as faults_mod
from batchline.domain import ids
from batchline.flows.ledger import compute
from batchline.local import chaos, emulators
from batchline.local import stack as local_stack
from batchline.local.provision import seed_context, synthetic_context
from batchline.local.stack_record import DEFAULT_STATE_DIR, load
from batchline.ops import render
from batchline.ops.local_commands import print_up_report, up_or_exit
from batchline.ops.options import STATE_DIR
from batchline.ops.render import console, out
from batchline.ops.report_tables import print_ledger
from batchline.ops.target import TargetError, resolve


def run(players: int = typer.Option(450, min=1, max=5000, help="Synthetic players to seed (one item each)."),
        game_date: str = typer.Option(None, help="YYYY-MM-DD; default today (UTC)."),
        faults: str = typer.Option(None, help="e.g. staging_write=0.3,completion_publish=0.1,poison=player_0007"),
        seed: int = typer.Option(0, help="Seed of the synthetic context and of the fault draws."),
        json_path: Path = typer.Option(None, "--json", help="Also write the ledger as JSON here."),
        keep_stack: bool = typer.Option(False, help="Leave a stack this command started running."),
        force: bool = typer.Option(False, help="Re-run a date whose batch is still active."),
        timeout_s: float = typer.Option(1800, "--timeout", help="Give up waiting after this many seconds."),
        state_dir: Path = STATE_DIR) -> None:
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
        info, report = up_or_exit(state_dir, ephemeral=not keep_stack, user=True)
    print_up_report(report)
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
        render.wait_batch(clients.fs, started["batch_id"], timeout_s, expected=started["expected_items"],
                          title="items + merge")
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


def ledger(batch_id: str, json_path: Path = typer.Option(None, "--json"), state_dir: Path = STATE_DIR,
           project: str = typer.Option(None, "--project", help="A deployment in this GCP project (ADC)."),
           stack_outputs: Path = typer.Option(None, "--stack-outputs", help="JSON of `pulumi stack output --json`."),
           setting: list[str] = typer.Option(None, "--setting", help="KEY=VALUE of batchline.settings.Settings.")
           ) -> None:
    """Recompute the loss ledger of a batch, on the running local stack or on a deployment (an operator
    needs what infra/access.py OPERATOR_ACCESS grants: docs/deploy.md, "Operators")."""
    if project is None and stack_outputs is None:
        info = load(state_dir)
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


def chaos_command(schedules: int = typer.Option(20, "--schedules", min=1, max=chaos.MAX_SCHEDULES,
                                               help="How many schedules."),
                  seed: int = typer.Option(0, help="Seed of the schedule generator (same seed, same schedules)."),
                  json_path: Path = typer.Option(None, "--json", help="Write every outcome and the summary here."),
                  state_dir: Path = typer.Option(DEFAULT_STATE_DIR, "--state-dir")) -> None:
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
            outcome = chaos.run_schedule(load(state_dir) or info, clients, sched)
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
