"""`batchline`: run a real batch through the local stack and print its loss ledger; manage the stack."""

from __future__ import annotations

import sys

import typer

from batchline.ops import control_commands as control
from batchline.ops import local_commands as local
from batchline.ops import report_commands as reports
from batchline.ops import run_commands as runs
from batchline.ops import schedule_commands as schedules

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
local_app = typer.Typer(help="Start, stop and check the local stack (emulators + functions).", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list them, replay them after a fix.", no_args_is_help=True)
app.add_typer(local_app, name="local")

# a real batch, its ledger, random fault schedules (batchline/ops/run_commands.py)
app.command("chaos")(runs.chaos_command)
app.command("run")(runs.run)
app.command("ledger")(runs.ledger)

# operator commands over the control path, against the local stack or a deployment
app.command("start")(control.start)
app.command("status")(reports.status)
app.command("audit")(reports.audit)
app.command("consolidate")(control.consolidate)
app.command("reconcile")(control.reconcile)
app.command("redispatch")(control.redispatch)
app.add_typer(dlq_app, name="dlq")
dlq_app.command("list")(reports.dlq_list)
dlq_app.command("replay")(control.dlq_replay)

# the local stack
local_app.command("seed")(local.local_seed)
local_app.command("up")(local.local_up)
local_app.command("supervise")(local.local_supervise)
local_app.command("down")(local.local_down)
local_app.command("status")(local.local_status)
local_app.command("schedules")(schedules.local_schedules)
local_app.command("trigger")(schedules.local_trigger)


def main() -> None:  # pragma: no cover - console entry for `python -m batchline.ops.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
