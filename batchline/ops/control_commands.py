"""`batchline start / consolidate / reconcile / redispatch / dlq replay`: operator requests.

Every request goes through the control topic (batchline.domain.control_requests) and is answered in
`control_requests/{sha256(request_id)}` (batchline.ops.target.send). Exit codes: 0 ok, 1 something
refused, failed or not done, 2 bad input.
"""

from __future__ import annotations

import typer

from batchline.adapters.clients import Clients
from batchline.domain import control_requests as ctl
from batchline.domain.errors import InvalidMessage
from batchline.domain.statuses import CONSOLIDATED
from batchline.ops import render
from batchline.ops.options import JSON, REQUEST_ID, TIMEOUT, WAIT, Target, parse_date, with_target
from batchline.ops.target import RequestIdReused, new_request_id, send


def parse_request(payload: dict):
    """The control request of `payload`, validated as the coordinator validates it; exit 2 if invalid."""
    try:
        return ctl.parse_control(payload)
    except InvalidMessage as exc:
        raise render.fail(str(exc)) from None


def _batches_named(result: dict) -> list[str]:
    """The batches a request's answer started or re-consolidated (what `--wait` waits for)."""
    return ([result["batch_id"]] if result.get("batch_id") else []) + [
        b["batch_id"] for b in result.get("repair_batches") or []] + list(result.get("reconsolidated_batches") or [])


def _request(clients: Clients, req, as_json: bool, wait: bool, timeout_s: float, ok=lambda r: True) -> None:
    """Send, wait for the answer, optionally wait for the batch it names; print; exit."""
    try:
        with render.console.status(f"{req.action}: request {req.request_id} sent, waiting for the coordinator"):
            record = send(clients, req, timeout_s=min(timeout_s, 300))
    except RequestIdReused as exc:
        raise render.fail(str(exc)) from None
    result = record.get("result") or {}
    answer = {"request_id": req.request_id, "action": req.action, "status": record["status"], "result": result,
              "error": record.get("error"), "attempts": record.get("attempts"), "message_id": record.get("message_id")}
    code = render.EXIT_OK if record["status"] == "done" and ok(result) else render.EXIT_PROBLEM
    batch_ids = _batches_named(result)
    if wait and record["status"] == "done" and batch_ids:
        answer["batches"] = []
        for b in batch_ids:
            batch = render.wait_batch(clients.fs, b, timeout_s)
            answer["batches"].append({"batch_id": b, "status": batch.get("status"), "error": batch.get("error")})
            if batch.get("status") != CONSOLIDATED:
                code = render.EXIT_PROBLEM
    if as_json:
        render.emit_json(answer)
    else:
        render.key_values(f"{req.action} {req.request_id}: {record['status']}",
                          {"status": record["status"], "error": record.get("error"), **result,
                           **({"batches": answer["batches"]} if "batches" in answer else {})})
    raise typer.Exit(code)


@with_target
def start(game_date: str = typer.Argument(..., help="YYYY-MM-DD"),
          force: bool = typer.Option(False, "--force", help="Supersede a run of the date still running."),
          accept_stale_inputs: bool = typer.Option(
              False, "--accept-stale-inputs", help="Run on context rows older than the freshness limit."),
          wait: bool = WAIT, request_id: str = REQUEST_ID, timeout: float = TIMEOUT, as_json: bool = JSON, *,
          target: Target) -> None:
    """Start a batch run of a date through the control topic (refused while one is still active)."""
    day = parse_date(game_date)
    req = parse_request({"action": "start", "game_date": day.isoformat(), "force": force,
                         "accept_stale_inputs": accept_stale_inputs,
                         "request_id": request_id or new_request_id("start", day.isoformat())})
    _request(target.clients(), req, as_json, wait, timeout)


@with_target
def consolidate(batch_id: str, wait: bool = WAIT, request_id: str = REQUEST_ID, timeout: float = TIMEOUT,
                as_json: bool = JSON, *, target: Target) -> None:
    """Consolidate a consolidation_failed batch again from its kept staging table."""
    req = parse_request({"action": "consolidate", "batch_id": batch_id,
                         "request_id": request_id or new_request_id("consolidate", batch_id)})
    _request(target.clients(), req, as_json, wait, timeout)


@with_target
def reconcile(game_date: str = typer.Argument(..., help="YYYY-MM-DD"),
              repair: bool = typer.Option(False, "--repair", help="Re-dispatch a small gap as a repair batch."),
              wait: bool = WAIT, request_id: str = REQUEST_ID, timeout: float = TIMEOUT, as_json: bool = JSON, *,
              target: Target) -> None:
    """Compare a date's schedule with the main table; exit 1 if anything is incomplete or orphaned."""
    day = parse_date(game_date)
    req = parse_request({"action": "reconcile", "game_date": day.isoformat(), "repair": repair,
                         "request_id": request_id or new_request_id("reconcile", day.isoformat())})
    _request(target.clients(), req, as_json, wait, timeout,
             ok=lambda r: not r.get("incomplete_items") and not r.get("orphaned_staging_tables"))


@with_target
def redispatch(batch_id: str, items: list[str] = typer.Argument(..., help="Item ids of the batch."),
               wait: bool = WAIT, request_id: str = REQUEST_ID, timeout: float = TIMEOUT, as_json: bool = JSON, *,
               target: Target) -> None:
    """Run some items of a batch again, as a repair batch of just those items."""
    req = parse_request({"action": "redispatch", "batch_id": batch_id, "items": items,
                         "request_id": request_id or new_request_id("redispatch", batch_id)})
    _request(target.clients(), req, as_json, wait, timeout)


@with_target
def dlq_replay(source: str = typer.Option("work", "--source"), batch: str = typer.Option(None, "--batch"),
               limit: int = typer.Option(100, "--limit"), wait: bool = WAIT, request_id: str = REQUEST_ID,
               timeout: float = TIMEOUT, as_json: bool = JSON, *, target: Target) -> None:
    """Replay dead letters through the coordinator; each is acknowledged only after its replacement is
    durable (work items: a repair batch of just those items). Exit 1 if any was not replayed."""
    req = parse_request({"action": "replay_dead_letters", "source": source, "batch_id": batch, "limit": limit,
                         "request_id": request_id or new_request_id("replay", f"{source}-{batch or 'all'}")})
    _request(target.clients(), req, as_json, wait, timeout, ok=lambda r: not r.get("not_replayed"))
