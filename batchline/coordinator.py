"""The coordinator: starts batches, records completions and dead letters, runs consolidation, and
checks for stalled batches. Each handler is idempotent and returns only after its write is durable.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from google.cloud import bigquery, firestore

from batchline import consolidate as cons
from batchline import faults as faults_mod
from batchline import ids
from batchline.clients import Clients
from batchline.logs import log_event
from batchline.messages import (
    BatchSummary,
    CompletionMessage,
    ConsolidationRequest,
    InvalidMessage,
    PushEnvelope,
    StallCheckRequest,
    StartRequest,
    WorkMessage,
    decode_data,
    encode,
    parse_model,
)
from batchline.state import (
    CONSOLIDATED,
    CONSOLIDATING,
    CONSOLIDATION_FAILED,
    CONSOLIDATION_REQUESTED,
    DISPATCH_FAILED,
    DISPATCHING,
    PENDING,
    RUNNING,
    BatchStore,
    Item,
    UnknownItem,
    now,
)
from batchline.topology import TOPOLOGY

DEAD_LETTER_SOURCES = TOPOLOGY.dead_letter_sources()  # ("work", "completions", "consolidation")


# -- start ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StartResult:
    batch_id: str
    game_date: dt.date
    expected_items: int
    superseded: str | None
    invalid_context_rows: int


def expected_items(clients: Clients, game_date: dt.date,
                   only: list[str] | None = None) -> tuple[list[Item], list[dict]]:
    """The schedule for a date from the context table: valid items, and rows rejected with why."""
    s = clients.settings
    table = f"`{s.project}.{s.main_dataset}.{ids.validate_table_name(s.context_table)}`"
    job = clients.bq.query(
        f"SELECT player_lookup, game_id FROM {table} WHERE game_date = @d ORDER BY player_lookup, game_id",
        job_config=bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("d", "DATE", game_date)]),
    )
    items: dict[str, Item] = {}
    rejected: list[dict] = []
    for row in job.result():
        player, game = row["player_lookup"], row["game_id"]
        try:
            item = Item(ids.validate_item_id(player), ids.validate_game_id(game))
        except ValueError as exc:
            rejected.append({"player_lookup": str(player)[:100], "game_id": str(game)[:100], "reason": str(exc)})
            continue
        if item.item_id in items:
            rejected.append({"player_lookup": player, "game_id": game,
                             "reason": f"duplicate player; kept game {items[item.item_id].game_id}"})
            continue
        items[item.item_id] = item
    if only is not None:
        wanted = set(only)
        items = {k: v for k, v in items.items() if k in wanted}
    return list(items.values()), rejected


def start_batch(clients: Clients, req: StartRequest, only_items: list[str] | None = None) -> StartResult:
    s = clients.settings
    game_date = req.game_date or s.today()
    if req.faults:
        if not s.allow_faults:
            raise InvalidMessage("fault injection is disabled on this deployment")
        try:
            faults_mod.parse(req.faults)
        except ValueError as exc:
            raise InvalidMessage(str(exc)) from exc
    items, rejected = expected_items(clients, game_date, only_items)
    if not items:
        raise InvalidMessage(f"no valid context rows for {game_date}; nothing to run")
    batch_id = ids.new_batch_id(game_date)
    store = BatchStore(clients.fs)
    superseded = store.create_batch(batch_id, game_date, items, force=req.force, faults=req.faults)
    log_event("batch_created", batch_id=batch_id, game_date=game_date, expected_items=len(items),
              superseded=superseded, force=req.force)
    if only_items is not None:
        store.set_batch_fields(batch_id, {"only_items": [i.item_id for i in items]})
    if rejected:
        store.set_batch_fields(batch_id, {"invalid_context_rows": rejected[:100],
                                          "invalid_context_row_count": len(rejected)})
        log_event("context_rows_rejected", severity="ERROR", batch_id=batch_id, count=len(rejected),
                  examples=rejected[:5])
    try:
        futures = [
            clients.publisher.publish(
                clients.topic_path("work"),
                encode(WorkMessage(batch_id=batch_id, game_date=game_date, item_id=i.item_id, game_id=i.game_id)),
                batch_id=batch_id, item_id=i.item_id)
            for i in items
        ]
        for f in futures:
            f.result(timeout=60)
    except Exception as exc:
        store.transition(batch_id, [DISPATCHING, RUNNING], {"status": DISPATCH_FAILED, "error": str(exc)[:2000]})
        log_event("dispatch_failed", severity="ERROR", batch_id=batch_id, error=str(exc))
        raise
    store.mark_running(batch_id)
    log_event("batch_dispatched", batch_id=batch_id, expected_items=len(items))
    request_consolidation_if_done(clients, batch_id, claimant=f"start:{batch_id}")
    return StartResult(batch_id, game_date, len(items), superseded, len(rejected))


# -- completions and dead letters -------------------------------------------------------------
def request_consolidation_if_done(clients: Clients, batch_id: str, claimant: str,
                                  reason: str = "all_items_terminal", take_over: bool = False) -> bool:
    """When no item is pending any more, make sure exactly one consolidation request goes out.
    `claimant` is stable across retries of the caller (its Pub/Sub message id)."""
    store = BatchStore(clients.fs)
    if reason == "all_items_terminal" and store.any_pending(batch_id):
        return False
    if not store.claim_consolidation(batch_id, reason, claimant, take_over=take_over):
        return False
    message_id = clients.publish("consolidation", encode(ConsolidationRequest(batch_id=batch_id, reason=reason)),
                                 batch_id=batch_id)
    store.set_batch_fields(batch_id, {"consolidation_message_id": message_id})
    log_event("consolidation_requested", batch_id=batch_id, reason=reason, message_id=message_id)
    return True


def handle_completion(clients: Clients, envelope: PushEnvelope) -> str:
    msg = parse_model(CompletionMessage, decode_data(envelope))
    if msg.staging_table != ids.staging_table_name(msg.batch_id, msg.item_id):
        raise InvalidMessage(f"staging table {msg.staging_table} does not belong to "
                             f"batch {msg.batch_id} item {msg.item_id}")
    return _record_completion(clients, msg, envelope.message.message_id)


def _record_completion(clients: Clients, msg: CompletionMessage, claimant: str) -> str:
    result = BatchStore(clients.fs).record_completion(msg.batch_id, msg.item_id, msg.staging_table,
                                                      msg.row_count, msg.attempt)
    if result == "late":
        log_event("late_completion", severity="ERROR", batch_id=msg.batch_id, item=msg.item_id,
                  staging_table=msg.staging_table, message="completion arrived after the batch moved on; if "
                  "its staging table was not merged, the daily reconciliation re-runs the item")
    else:
        log_event("item_completed" if result == "recorded" else "completion_duplicate",
                  batch_id=msg.batch_id, item=msg.item_id, staging_table=msg.staging_table,
                  row_count=msg.row_count)
    request_consolidation_if_done(clients, msg.batch_id, claimant)
    return result


def handle_dead_letter(clients: Clients, source: str, envelope: PushEnvelope) -> str:
    """A message exhausted its delivery attempts. Turn it into a terminal state an operator sees.

    The dead-letter pull subscription keeps its own copy for replay regardless of what happens here.
    """
    if source not in DEAD_LETTER_SOURCES:
        raise InvalidMessage(f"unknown dead-letter source {source!r}")
    store = BatchStore(clients.fs)
    raw = envelope.message.data.encode()
    attempts = envelope.message.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount", "?")
    try:
        payload = decode_data(envelope)
        if source == "work":
            msg = parse_model(WorkMessage, payload)
            result = store.record_failure(msg.batch_id, msg.item_id,
                                          f"work message dead-lettered after {attempts} delivery attempts")
            log_event("item_dead_lettered", severity="ERROR", batch_id=msg.batch_id, item=msg.item_id,
                      result=result, delivery_attempts=attempts)
            request_consolidation_if_done(clients, msg.batch_id, envelope.message.message_id)
            return result
        if source == "completions":
            # The staging table is durable; recording the completion here keeps its rows.
            msg = parse_model(CompletionMessage, payload)
            log_event("completion_dead_lettered", severity="ERROR", batch_id=msg.batch_id, item=msg.item_id,
                      delivery_attempts=attempts)
            return _record_completion(clients, msg, envelope.message.message_id)
        req = parse_model(ConsolidationRequest, payload)
        # Only a consolidation still under way can fail this way; a late dead letter for a batch that
        # consolidated in the meantime (or another generation) changes nothing.
        failed = store.transition(req.batch_id, [CONSOLIDATION_REQUESTED, CONSOLIDATING], {
            "status": CONSOLIDATION_FAILED, "error": f"consolidation dead-lettered after {attempts} attempts"})
        log_event("consolidation_failed" if failed else "consolidation_dead_letter_ignored",
                  severity="ERROR" if failed else "WARNING", batch_id=req.batch_id, reason="dead-lettered",
                  delivery_attempts=attempts)
        return "recorded" if failed else "ignored"
    except (InvalidMessage, UnknownItem) as exc:
        store.record_rejected(envelope.message.message_id, envelope.subscription, raw, str(exc))
        log_event("message_rejected", severity="ERROR", source=source,
                  message_id=envelope.message.message_id, error=str(exc))
        return "rejected"


# -- consolidation ----------------------------------------------------------------------------
def handle_consolidation(clients: Clients, envelope: PushEnvelope) -> str:
    req = parse_model(ConsolidationRequest, decode_data(envelope))
    store = BatchStore(clients.fs)
    message_id = envelope.message.message_id
    verdict, batch = store.take_lease(req.batch_id, message_id, manual_retry=req.reason == "manual")
    if verdict != "run":
        log_event("consolidation_skipped", batch_id=req.batch_id, verdict=verdict, batch_status=batch["status"])
        return verdict
    return consolidate_batch(clients, req.batch_id, batch, message_id)


def consolidate_batch(clients: Clients, batch_id: str, batch: dict, lease: str) -> str:
    """Inventory, one MERGE, verification, cleanup, result. Every status change is conditional on
    still holding the lease, so nothing written here can overwrite another writer's state."""
    s = clients.settings
    store = BatchStore(clients.fs)
    game_date = dt.date.fromisoformat(batch["game_date"])
    items = store.items(batch_id)
    inv = cons.inventory(clients.bq, s, batch_id, items)
    merged = batch.get("merge_result")
    if merged is not None:
        # A redelivery after the MERGE was verified: the tables that were merged are the inventory,
        # whatever cleanup already deleted.
        inv.tables = {item: t for t in merged["tables"] if (item := ids.item_of_staging_table(batch_id, t))}
        inv.missing_tables = [i for i in inv.expected_completed if i not in inv.tables]
        inv.recovered = sorted(i for i in inv.tables if i not in set(inv.expected_completed))
    expected = int(batch["expected_items"])
    log_event("staging_inventory", batch_id=batch_id, expected_items=expected,
              staging_tables=len(inv.tables), completed=len(inv.expected_completed),
              failed=len(inv.failed_items), pending=len(inv.pending_items), recovered=inv.recovered)
    gap = expected - len(inv.tables)
    if gap:
        log_event("staging_gap", severity="WARNING", batch_id=batch_id, missing_staging_tables=gap,
                  missing_items=sorted(set(i["item_id"] for i in items) - set(inv.tables))[:500],
                  completed_without_table=inv.missing_tables)
    injected = faults_mod.parse(batch.get("faults")) if s.allow_faults else faults_mod.FaultSpec()
    tables = list(inv.tables.values())
    try:
        if merged is None and tables:
            result = cons.merge_staging(
                clients.bq, s, batch_id, game_date, tables,
                merge_date=game_date + dt.timedelta(days=1) if injected.zero_merge else None,
                generation=int(batch.get("consolidation_generation") or 0))
            merged = result.as_dict()
            # Durable before any deletion, so a redelivery skips straight to cleanup.
            store.set_batch_fields(batch_id, {"merge_result": merged,
                                              "main_table_dml_jobs": firestore.ArrayUnion([result.job_id])})
            log_event("merge_verified", batch_id=batch_id, job_id=result.job_id,
                      affected_rows=result.affected_rows, verified_rows=result.verified_rows,
                      timings_s=result.timings_s)
    except cons.ConsolidationError as exc:
        store.transition(batch_id, [CONSOLIDATING], {"status": CONSOLIDATION_FAILED, "error": str(exc)[:4000],
                                                     "staging_tables_kept": len(tables)}, lease_message_id=lease)
        log_event("consolidation_failed", severity="ERROR", batch_id=batch_id, error=str(exc),
                  staging_tables_kept=len(tables))
        return "failed"
    except Exception as exc:
        if cons.is_dml_rate_limit(exc):
            log_event("dml_rate_limited", severity="ERROR", batch_id=batch_id, error=str(exc))
        raise
    merged = merged or {}
    deleted = cons.delete_tables(clients.bq, s, list(merged.get("tables", [])))
    cons.delete_tables(clients.bq, s, list(merged.get("scratch_tables", [])))
    merged_items = int(merged.get("verified_items", 0))
    missing = sorted(set(i["item_id"] for i in items) - set(inv.tables) - set(inv.failed_items))
    coverage = round(100.0 * merged_items / expected, 2) if expected else 0.0
    finished = store.transition(batch_id, [CONSOLIDATING], {
        "status": CONSOLIDATED,
        "merged_items": merged_items,
        "merged_rows": int(merged.get("verified_rows", 0)),
        "failed_items": inv.failed_items,
        "missing_items": missing,
        "recovered_items": inv.recovered,
        "staging_gap": gap,  # expected items without a staging table at consolidation (F9 layer 4)
        "completed_without_table": inv.missing_tables,
        "staging_tables_deleted": deleted,
        "coverage_pct": coverage,
        "consolidated_at": now(),
    }, lease_message_id=lease)
    if not finished:
        log_event("consolidation_lease_lost", severity="ERROR", batch_id=batch_id, lease=lease,
                  message="the batch changed under this consolidation; its result was not written")
        return "lease_lost"
    log_event("consolidation_succeeded", batch_id=batch_id, merged_items=merged_items,
              merged_rows=merged.get("verified_rows", 0), coverage_pct=coverage,
              failed_items=len(inv.failed_items), missing_items=len(missing), staging_tables_deleted=deleted)
    if coverage < s.coverage_warning_pct:
        log_event("coverage_low", severity="ERROR" if coverage < s.coverage_critical_pct else "WARNING",
                  batch_id=batch_id, warning_pct=s.coverage_warning_pct, critical_pct=s.coverage_critical_pct,
                  coverage_pct=coverage, failed_items=inv.failed_items[:100], missing_items=missing[:100])
    summary = BatchSummary(batch_id=batch_id, game_date=game_date, status=CONSOLIDATED, expected_items=expected,
                           merged_items=merged_items, failed_items=inv.failed_items, missing_items=missing,
                           merged_rows=int(merged.get("verified_rows", 0)), coverage_pct=coverage)
    clients.publish("summary", encode(summary), batch_id=batch_id)
    return "consolidated"


# -- stall check (F4) -------------------------------------------------------------------------
class StallCheckErrors(RuntimeError):
    """Some batches could not be checked; the others were. Answered 5xx so the scheduler retries."""


def stall_check(clients: Clients, req: StallCheckRequest) -> list[dict]:
    """Find batches that stopped moving (F4) and move them on, each batch on its own: one that fails
    to be checked does not keep the others from being checked.

    - running, no progress for `stall_minutes`: re-dispatch the pending items once; still stalled a
      whole period later: mark them failed ("stalled") and consolidate what exists, unless completion
      is below `min_completion_pct` (then it stays open and alerts every run);
    - dispatching for longer than a stall period: the start died mid-dispatch; terminal
      `dispatch_failed`, loudly (a dispatching batch is never consolidated: its items may still be
      being written);
    - consolidation claimed but never published (claimant died): publish it."""
    s = clients.settings
    stall = dt.timedelta(minutes=req.stall_minutes or s.stall_minutes)
    min_pct = req.min_completion_pct if req.min_completion_pct is not None else s.min_completion_pct
    store = BatchStore(clients.fs)
    reports: list[dict] = []
    errors: list[str] = []
    checks = [(b, _check_unpublished_claim) for b in store.batches_with_status([CONSOLIDATION_REQUESTED])]
    checks += [(b, _check_dispatching) for b in store.batches_with_status([DISPATCHING])]
    checks += [(b, _check_running) for b in store.batches_with_status([RUNNING])]
    for batch, check in checks:
        try:
            report = check(clients, store, batch, stall, min_pct, req.redispatch)
        except Exception as exc:  # noqa: BLE001 - logged, counted, and re-raised below as a 5xx
            errors.append(f"{batch['batch_id']}: {type(exc).__name__}: {exc}")
            log_event("stall_check_failed", severity="ERROR", batch_id=batch["batch_id"], error=str(exc))
            continue
        if report:
            log_event("batch_stalled", severity="WARNING", **report)
            reports.append(report)
    if errors:
        raise StallCheckErrors(f"{len(errors)} batches could not be checked: {'; '.join(errors)[:2000]}")
    return reports


def _check_unpublished_claim(clients, store, batch, stall, min_pct, redispatch) -> dict | None:
    requested = batch.get("consolidation_requested_at")
    if batch.get("consolidation_message_id") or not requested or now() - requested < stall:
        return None
    if request_consolidation_if_done(clients, batch["batch_id"], "stall-check", reason="stalled", take_over=True):
        return {"batch_id": batch["batch_id"], "action": "consolidation_republished"}
    return None


def _check_dispatching(clients, store, batch, stall, min_pct, redispatch) -> dict | None:
    if now() - batch["created_at"] < stall:
        return None
    if store.transition(batch["batch_id"], [DISPATCHING], {"status": DISPATCH_FAILED,
                                                          "error": f"still dispatching after {stall}"}):
        log_event("dispatch_failed", severity="ERROR", batch_id=batch["batch_id"], error="start died mid-dispatch")
        return {"batch_id": batch["batch_id"], "action": "dispatch_failed"}
    return None


def _check_running(clients, store, batch, stall, min_pct, redispatch) -> dict | None:
    batch_id = batch["batch_id"]
    items = store.items(batch_id)
    pending = [i for i in items if i["status"] == PENDING]
    if not pending:
        request_consolidation_if_done(clients, batch_id, "stall-check")
        return None
    last_progress = max(i["updated_at"] for i in items)
    if now() - last_progress < stall:
        return None
    done_pct = round(100.0 * (len(items) - len(pending)) / len(items), 2)
    pending_ids = sorted(i["item_id"] for i in pending)
    report = {"batch_id": batch_id, "completion_pct": done_pct, "pending_items": pending_ids}
    never_redispatched = [i for i in pending if not i.get("redispatched_at")]
    if redispatch and never_redispatched:
        for i in never_redispatched:
            clients.publish("work", encode(WorkMessage(batch_id=batch_id, game_date=batch["game_date"],
                                                       item_id=i["item_id"], game_id=i["game_id"])),
                            batch_id=batch_id, item_id=i["item_id"])
        store.mark_redispatched(batch_id, [i["item_id"] for i in never_redispatched])
        report["action"] = "redispatched"
    elif done_pct >= min_pct:
        for item_id in pending_ids:
            store.record_failure(batch_id, item_id, f"stalled: no progress for {stall}")
        request_consolidation_if_done(clients, batch_id, "stall-check", reason="stalled")
        report["action"] = "consolidating_partial"
    else:
        report["action"] = "below_min_completion"
    return report


__all__ = ["start_batch", "handle_completion", "handle_dead_letter", "handle_consolidation", "stall_check",
           "consolidate_batch", "CONSOLIDATED"]
