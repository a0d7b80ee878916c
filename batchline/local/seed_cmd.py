"""`batchline local seed DATE`: load synthetic context rows for a date into the local stack's context
table, so that `batchline start DATE` (or the scheduled start) has a schedule to run.

On a deployment the context table belongs to the upstream loader (docs/deploy.md, "The context
table"); this command refuses a deployment target rather than write made-up players there.
"""

from __future__ import annotations

from pathlib import Path

import typer

from batchline.domain import ids
from batchline.local import stack as local_stack
from batchline.local.provision import seed_context, synthetic_context
from batchline.ops import render
from batchline.ops.target import TargetError, resolve

DEPLOYMENT_REFUSED = ("`batchline local seed` writes synthetic players into the local stack only; on a deployment "
                      "the context table is your upstream loader's (rows of game_date, player_lookup, game_id "
                      "and loaded_at: docs/deploy.md, \"The context table\")")

REFUSED_HELP = "Refused: a deployment's loader owns its context table."


def seed_command(game_date: str = typer.Argument(..., help="YYYY-MM-DD"),
                 players: int = typer.Option(450, min=1, max=5000, help="Synthetic players (one item each)."),
                 seed: int = typer.Option(0, help="Seed of the synthetic schedule (which game each player is in)."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
                 state_dir: Path = typer.Option(local_stack.DEFAULT_STATE_DIR, "--state-dir"),
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
        render.out.print(f"next: `batchline start {day}`")
