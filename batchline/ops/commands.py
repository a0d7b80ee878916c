"""`batchline start / status / audit / consolidate / reconcile / redispatch / dlq list|replay`.

Every request goes through the control topic (batchline.domain.control_requests) and is answered in
`control_requests/{sha256(request_id)}`; reads go to Firestore, BigQuery and the dead-letter pull
subscriptions. Exit codes: 0 ok, 1 something refused, failed, missing or duplicated, 2 bad input.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer

from batchline.adapters.batch_store import BatchStore
from batchline.adapters.clients import Clients
from batchline.adapters.delivery_errors import summary
from batchline.domain import control_requests as ctl
from batchline.domain import ids
from batchline.domain.errors import InvalidMessage
from batchline.domain.statuses import CONSOLIDATED
from batchline.flows.replay import listed_dead_letters
from batchline.local import stack as local_stack
from batchline.ops import render, views
from batchline.ops.target import RequestIdReused, TargetError, new_request_id, resolve, send

STATE_DIR = typer.Option(local_stack.DEFAULT_STATE_DIR, "--state-dir", help="The local stack (default target).")
PROJECT = typer.Option(None, "--project", help="Target a deployment in this GCP project (ADC credentials).")
OUTPUTS = typer.Option(None, "--stack-outputs", help="JSON of `pulumi stack output --json` (resource names).")
PREFIX = typer.Option(None, "--topic-prefix", help="The deployment's Pub/Sub topic prefix.")
SETTING = typer.Option(None, "--setting", help="KEY=VALUE of batchline.settings.Settings, e.g. main_dataset=x.")
JSON = typer.Option(False, "--json", help="Print JSON on stdout instead of tables.")
REQUEST_ID = typer.Option(None, "--request-id", help="Idempotency key; the same id is never run twice.")
WAIT = typer.Option(False, "--wait", help="Wait for the batch it starts to end, with a progress bar.")
TIMEOUT = typer.Option(1800.0, "--timeout", help="Seconds to wait at most.")

dlq_app = typer.Typer(help="Dead letters: list them, replay them after a fix.", no_args_is_help=True)


def _clients(state_dir, project, outputs, prefix, setting) -> Clients:
    try:
        return resolve(state_dir, project, outputs, prefix, setting)
    except TargetError as exc:
        raise render.fail(str(exc)) from None


def _parse(payload: dict):
    try:
        return ctl.parse_control(payload)
    except InvalidMessage as exc:
        raise render.fail(str(exc)) from None


def _date(value: str) -> dt.date:
    try:
        return ids.parse_game_date(value)
    except ValueError as exc:
        raise render.fail(str(exc)) from None


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
    batch_ids = ([result["batch_id"]] if result.get("batch_id") else []) + [
        b["batch_id"] for b in result.get("repair_batches") or []] + list(result.get("reconsolidated_batches") or [])
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


def start(game_date: str = typer.Argument(..., help="YYYY-MM-DD"),
          force: bool = typer.Option(False, "--force", help="Supersede a run of the date still running."),
          accept_stale_inputs: bool = typer.Option(
              False, "--accept-stale-inputs", help="Run on context rows older than the freshness limit."),
          wait: bool = WAIT, request_id: str = REQUEST_ID, timeout: float = TIMEOUT, as_json: bool = JSON,
          state_dir: Path = STATE_DIR, project: str = PROJECT, stack_outputs: Path = OUTPUTS,
          topic_prefix: str = PREFIX, setting: list[str] = SETTING) -> None:
    """Start a batch run of a date through the control topic (refused while one is still active)."""
    day = _date(game_date)
    req = _parse({"action": "start", "game_date": day.isoformat(), "force": force,
                  "accept_stale_inputs": accept_stale_inputs,
                  "request_id": request_id or new_request_id("start", day.isoformat())})
    _request(_clients(state_dir, project, stack_outputs, topic_prefix, setting), req, as_json, wait, timeout)


def consolidate(batch_id: str, wait: bool = WAIT, request_id: str = REQUEST_ID, timeout: float = TIMEOUT,
                as_json: bool = JSON, state_dir: Path = STATE_DIR, project: str = PROJECT,
                stack_outputs: Path = OUTPUTS, topic_prefix: str = PREFIX, setting: list[str] = SETTING) -> None:
    """Consolidate a consolidation_failed batch again from its kept staging table."""
    req = _parse({"action": "consolidate", "batch_id": batch_id,
                  "request_id": request_id or new_request_id("consolidate", batch_id)})
    _request(_clients(state_dir, project, stack_outputs, topic_prefix, setting), req, as_json, wait, timeout)


def reconcile(game_date: str = typer.Argument(..., help="YYYY-MM-DD"),
              repair: bool = typer.Option(False, "--repair", help="Re-dispatch a small gap as a repair batch."),
              wait: bool = WAIT, request_id: str = REQUEST_ID, timeout: float = TIMEOUT, as_json: bool = JSON,
              state_dir: Path = STATE_DIR, project: str = PROJECT, stack_outputs: Path = OUTPUTS,
              topic_prefix: str = PREFIX, setting: list[str] = SETTING) -> None:
    """Compare a date's schedule with the main table; exit 1 if anything is incomplete or orphaned."""
    day = _date(game_date)
    req = _parse({"action": "reconcile", "game_date": day.isoformat(), "repair": repair,
                  "request_id": request_id or new_request_id("reconcile", day.isoformat())})
    _request(_clients(state_dir, project, stack_outputs, topic_prefix, setting), req, as_json, wait, timeout,
             ok=lambda r: not r.get("incomplete_items") and not r.get("orphaned_staging_tables"))


def redispatch(batch_id: str, items: list[str] = typer.Argument(..., help="Item ids of the batch."),
               wait: bool = WAIT, request_id: str = REQUEST_ID, timeout: float = TIMEOUT, as_json: bool = JSON,
               state_dir: Path = STATE_DIR, project: str = PROJECT, stack_outputs: Path = OUTPUTS,
               topic_prefix: str = PREFIX, setting: list[str] = SETTING) -> None:
    """Run some items of a batch again, as a repair batch of just those items."""
    req = _parse({"action": "redispatch", "batch_id": batch_id, "items": items,
                  "request_id": request_id or new_request_id("redispatch", batch_id)})
    _request(_clients(state_dir, project, stack_outputs, topic_prefix, setting), req, as_json, wait, timeout)


def status(batch_id: str = typer.Argument(None), game_date: str = typer.Option(None, "--date"),
           as_json: bool = JSON, state_dir: Path = STATE_DIR, project: str = PROJECT,
           stack_outputs: Path = OUTPUTS, topic_prefix: str = PREFIX, setting: list[str] = SETTING) -> None:
    """A batch (or a date's active batch): progress, timings, gaps, consolidation, next steps."""
    if (batch_id is None) == (game_date is None):
        raise render.fail("name a batch id or --date, not both")
    clients = _clients(state_dir, project, stack_outputs, topic_prefix, setting)
    if game_date:
        batch_id = BatchStore(clients.fs).active_batch_of(_date(game_date))
        if batch_id is None:
            raise render.fail(f"no batch for {game_date}")
    try:
        v = views.status(clients, ids.validate_batch_id(batch_id))
    except (ValueError, LookupError) as exc:
        raise render.fail(str(exc)) from None
    if as_json:
        render.emit_json(v)
    else:
        render.key_values(f"batch {v['batch_id']} ({v['game_date']}): {v['status']}", {
            "expected items": v["expected_items"], "items by state": v["items"],
            "dead-lettered items": v["dead_lettered_items"], "timings (s)": v["timings_s"], **v["consolidation"],
            "missing items": v["gaps"]["missing_items"], "staging gap": v["gaps"]["staging_gap"]})
        render.records("failed items", ["item_id", "reason", "last_error", "failed_deliveries", "dead_lettered",
                                        "replayed_in"], _readable_errors(v["gaps"]["failed_items"]))
        for step in v["next_steps"] or ["nothing to do"]:
            render.out.print(f"next: {step}")
    raise typer.Exit(render.EXIT_PROBLEM if v["needs_attention"] else render.EXIT_OK)


def audit(batch_id: str, as_json: bool = JSON, state_dir: Path = STATE_DIR, project: str = PROJECT,
          stack_outputs: Path = OUTPUTS, topic_prefix: str = PREFIX, setting: list[str] = SETTING) -> None:
    """Every expected item in exactly one of merged / recovered / dead_lettered / missing; exit 1 if any
    item is missing or any row duplicated."""
    clients = _clients(state_dir, project, stack_outputs, topic_prefix, setting)
    try:
        a = views.audit(clients, ids.validate_batch_id(batch_id))
    except (ValueError, LookupError) as exc:
        raise render.fail(str(exc)) from None
    if as_json:
        render.emit_json(a)
    else:
        render.key_values(f"audit of batch {a['batch_id']} ({a['game_date']}, {a['batch_status']})", {
            "expected items": a["expected_items"], **a["counts"], "sum": a["sum"], "merged rows": a["merged_rows"],
            "merged, rows since updated by a later run": a["overwritten_by_later_runs"],
            "duplicate rows": a["duplicate_rows"],
            "verdict": "OK: every item accounted for" if a["ok"] else "; ".join(a["problems"])})
        render.records("items not simply merged", ["item_id", "state", "rows", "reason", "last_error",
                                                   "failed_deliveries", "replayed_in", "active_rows_from"],
                       _readable_errors([i for i in a["items"] if i["state"] != "merged"]))
    raise typer.Exit(render.EXIT_OK if a["ok"] else render.EXIT_PROBLEM)


@dlq_app.command("list")
def dlq_list(source: str = typer.Option(None, "--source", help="work, completions, consolidation or control."),
             batch: str = typer.Option(None, "--batch"),
             include_replayed: bool = typer.Option(False, "--include-replayed",
                                                   help="With --batch: also work dead letters already replayed."),
             as_json: bool = JSON, state_dir: Path = STATE_DIR,
             project: str = PROJECT, stack_outputs: Path = OUTPUTS, topic_prefix: str = PREFIX,
             setting: list[str] = SETTING) -> None:
    """Show dead letters awaiting replay, with the last error of each work item. A batch's work dead
    letters come from their durable records; the rest are pulled and released (they stay)."""
    if source is not None and source not in ctl.REPLAY_SOURCES:
        raise render.fail(f"--source must be one of {', '.join(ctl.REPLAY_SOURCES)}")
    if batch is not None:
        _valid_batch(batch)
    clients = _clients(state_dir, project, stack_outputs, topic_prefix, setting)
    found = listed_dead_letters(clients, [source] if source else list(ctl.REPLAY_SOURCES), batch,
                                include_replayed=include_replayed)
    if as_json:
        render.emit_json({"count": len(found), "dead_letters": found})
    else:
        rows = _readable_errors([{**m, "attempts": m["attributes"].get("CloudPubSubDeadLetterSourceDeliveryCount")}
                                 for m in found])
        render.records("dead letters", ["source", "batch_id", "item_id", "attempts", "last_error", "replayed_in",
                                        "message_id", "publish_time", "payload_error"], rows)
    raise typer.Exit(render.EXIT_OK)


def _readable_errors(rows: list[dict]) -> list[dict]:
    """Rows whose `last_error` record becomes one line (`Type: message (cause: ...)`)."""
    return [{**r, "last_error": summary(r.get("last_error"))} for r in rows]


def _valid_batch(batch_id: str) -> str:
    try:
        return ids.validate_batch_id(batch_id)
    except ValueError as exc:
        raise render.fail(str(exc)) from None


@dlq_app.command("replay")
def dlq_replay(source: str = typer.Option("work", "--source"), batch: str = typer.Option(None, "--batch"),
               limit: int = typer.Option(100, "--limit"), wait: bool = WAIT, request_id: str = REQUEST_ID,
               timeout: float = TIMEOUT, as_json: bool = JSON, state_dir: Path = STATE_DIR,
               project: str = PROJECT, stack_outputs: Path = OUTPUTS, topic_prefix: str = PREFIX,
               setting: list[str] = SETTING) -> None:
    """Replay dead letters through the coordinator; each is acknowledged only after its replacement is
    durable (work items: a repair batch of just those items). Exit 1 if any was not replayed."""
    req = _parse({"action": "replay_dead_letters", "source": source, "batch_id": batch, "limit": limit,
                  "request_id": request_id or new_request_id("replay", f"{source}-{batch or 'all'}")})
    _request(_clients(state_dir, project, stack_outputs, topic_prefix, setting), req, as_json, wait, timeout,
             ok=lambda r: not r.get("not_replayed"))


def register(app: typer.Typer) -> None:
    for fn in (start, status, audit, consolidate, reconcile, redispatch):
        app.command(fn.__name__)(fn)
    app.add_typer(dlq_app, name="dlq")
