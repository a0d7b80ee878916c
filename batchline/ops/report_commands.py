"""`batchline status / audit / dlq list`: what a batch and its dead letters look like, read from the
systems of record (batchline.ops.views), as JSON (`--json`, stdout only) or tables
(batchline.ops.report_tables). Exit codes: 0 ok, 1 something needs attention, missing or duplicated,
2 bad input.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from batchline.adapters.clients import Clients
from batchline.domain import control_requests as ctl
from batchline.domain import ids
from batchline.flows.replay import listed_dead_letters
from batchline.ops import render, report_tables, views
from batchline.ops.options import JSON, Target, parse_date, valid_batch_id, with_target


def _report_of(report: Callable[[Clients, str], dict], clients: Clients, batch_id: str) -> dict:
    """`report` of one batch; exit 2 on a bad or unknown batch id."""
    try:
        return report(clients, ids.validate_batch_id(batch_id))
    except (ValueError, LookupError) as exc:
        raise render.fail(str(exc)) from None


@with_target
def status(batch_id: str = typer.Argument(None), game_date: str = typer.Option(None, "--date"),
           as_json: bool = JSON, *, target: Target) -> None:
    """A batch (or a date's active batch): progress, timings, gaps, consolidation, next steps."""
    if (batch_id is None) == (game_date is None):
        raise render.fail("name a batch id or --date, not both")
    clients = target.clients()
    if game_date:
        batch_id = clients.batches.active_batch_of(parse_date(game_date))
        if batch_id is None:
            raise render.fail(f"no batch for {game_date}")
    v = _report_of(views.status, clients, batch_id)
    if as_json:
        render.emit_json(v)
    else:
        report_tables.print_status(v)
    raise typer.Exit(render.EXIT_PROBLEM if v["needs_attention"] else render.EXIT_OK)


@with_target
def audit(batch_id: str, as_json: bool = JSON, *, target: Target) -> None:
    """Every expected item in exactly one of merged / recovered / dead_lettered / missing; exit 1 if any
    item is missing or any row duplicated."""
    a = _report_of(views.audit, target.clients(), batch_id)
    if as_json:
        render.emit_json(a)
    else:
        report_tables.print_audit(a)
    raise typer.Exit(render.EXIT_OK if a["ok"] else render.EXIT_PROBLEM)


@with_target
def dlq_list(source: str = typer.Option(None, "--source", help="work, completions, consolidation or control."),
             batch: str = typer.Option(None, "--batch"),
             include_replayed: bool = typer.Option(False, "--include-replayed",
                                                   help="With --batch: also work dead letters already replayed."),
             as_json: bool = JSON, *, target: Target) -> None:
    """Show dead letters awaiting replay, with the last error of each work item. A batch's work dead
    letters come from their durable records; the rest are pulled and released (they stay)."""
    if source is not None and source not in ctl.REPLAY_SOURCES:
        raise render.fail(f"--source must be one of {', '.join(ctl.REPLAY_SOURCES)}")
    if batch is not None:
        valid_batch_id(batch)
    found = listed_dead_letters(target.clients(), [source] if source else list(ctl.REPLAY_SOURCES), batch,
                                include_replayed=include_replayed)
    if as_json:
        render.emit_json({"count": len(found), "dead_letters": found})
    else:
        report_tables.print_dead_letters(found)
    raise typer.Exit(render.EXIT_OK)
