"""Daily reconciliation (F9 layer 6): the schedule against the main table, whatever happened.

For a date it first finishes the staged rows that outlived their batch (merged, or dropped when a
newer run replaced their rows, or kept and reported with the reason: batchline/flows/orphans.py), then
compares the context table (who should have predictions) with the main table (who has all prediction
systems), logs the result as one structured line that alerts can key on, and re-dispatches a small gap
as a new batch of just the missing items. A large gap is only reported: it needs a human.

A gap is repaired once: the repair batch is registered in the transaction that records its items on
the date document, so two reconciliations never start two repairs of one gap, and a gap that persists
after its repair (a poison item) is reported (`repair_already_attempted`) instead of re-run every day,
until an operator asks again (`batchline reconcile DATE --repair`) or a full run of the date starts the record afresh.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from batchline.adapters import queries
from batchline.adapters.clients import Clients
from batchline.domain.errors import BatchConflict, MainTableMissing, RepairAlreadyAttempted
from batchline.domain.item_shape import shape_problem
from batchline.domain.messages import ReconcileRequest, StartRequest
from batchline.flows.dispatch import expected_items, start_batch
from batchline.flows.orphans import handle_orphans
from batchline.logs import log_event


@dataclass
class Reconciliation:
    game_date: dt.date
    expected_items: int
    complete_items: int
    incomplete_items: list[str]
    orphaned_staging_tables: list[str]  # still there after this run; why is in orphans_kept
    redispatched_batch_id: str | None
    action: str
    orphans_merged: list[str]
    orphans_dropped: list[str]
    orphans_kept: dict[str, str]
    previous_repair_batch_id: str | None = None
    other_dates_staging_tables: dict[str, str] | None = None  # reported, not this date's verdict

    def as_dict(self) -> dict:
        d = asdict(self)
        d["game_date"] = self.game_date.isoformat()
        return d


def complete_players(clients: Clients, game_date: dt.date) -> set[str]:
    """Players whose active rows are their complete work: one per configured system x prop (the same
    judgement as the ledger's and the audit's, item_shape.py)."""
    shapes = queries.active_shapes(clients.bq, clients.settings, game_date)
    return {player for player, shape in shapes.items() if shape_problem(shape) is None}


def reconcile(clients: Clients, req: ReconcileRequest) -> Reconciliation:
    game_date = req.game_date or (clients.settings.today() - dt.timedelta(days=1))
    items, _ = expected_items(clients, game_date)
    expected = {i.item_id for i in items}
    orphans = handle_orphans(clients, game_date, expected)  # before counting: merged orphans close gaps
    try:
        complete = complete_players(clients, game_date) & expected
    except MainTableMissing:
        complete = set()
    incomplete = sorted(expected - complete)
    redispatched = previous_repair = None
    action = "none"
    if incomplete:
        if len(incomplete) <= req.redispatch_max:
            try:
                redispatched = start_batch(clients, StartRequest(game_date=game_date), only_items=incomplete,
                                           repeat_repair=req.repair).batch_id
                action = "redispatched"
            except BatchConflict as exc:
                action = f"not redispatched: {exc}"
            except RepairAlreadyAttempted as exc:
                action, previous_repair = "repair_already_attempted", exc.batch_id
                log_event("repair_already_attempted", severity="WARNING", batch_id=exc.batch_id, game_date=game_date,
                          items=incomplete[:200], message="this gap was repaired once and persists; after a fix: "
                          f"`batchline reconcile {game_date.isoformat()} --repair`")
        else:
            action = "gap_too_large_to_redispatch"
    left = sorted(orphans.kept)
    result = Reconciliation(game_date, len(expected), len(complete), incomplete, left, redispatched, action,
                            sorted(orphans.merged), sorted(orphans.dropped), orphans.kept, previous_repair,
                            orphans.elsewhere)
    coverage = round(100.0 * len(complete) / len(expected), 2) if expected else 100.0
    log_event("reconciliation_gap" if incomplete or left else "reconciliation_ok",
              severity="ERROR" if incomplete or left else "INFO", game_date=game_date,
              coverage_pct=coverage, incomplete_items=incomplete[:200], incomplete_count=len(incomplete),
              orphaned_staging_tables=len(left), orphans_kept=dict(list(orphans.kept.items())[:50]),
              orphans_merged=len(orphans.merged), orphans_dropped=len(orphans.dropped),
              orphan_merge_jobs=orphans.merge_jobs, other_dates_staging_tables=len(orphans.elsewhere),
              action=action, redispatched_batch_id=redispatched,
              previous_repair_batch_id=previous_repair)
    return result
