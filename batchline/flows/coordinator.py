"""The coordinator: records completions and dead letters and runs the consolidation. Starting and
dispatching live in `batchline.flows.dispatch`, the stall check in `batchline.flows.stall`; the lifecycle
decisions all of them rely on in `batchline.domain.lifecycle`. Each handler is idempotent and returns only
after its write is durable.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid

from google.cloud import bigquery, firestore

from batchline.adapters import delivery_errors, manifests, staging
from batchline.adapters import merge as cons
from batchline.adapters.batch_store import BatchStore, ItemSnapshot, now
from batchline.adapters.clients import Clients
from batchline.adapters.dead_letter_records import DeadLetterLog
from batchline.domain import control_requests as ctl
from batchline.domain import faults as faults_mod
from batchline.domain import ids, item_shape
from batchline.domain import lifecycle as lc
from batchline.domain.errors import (
    ConsolidationError,
    InvalidMessage,
    MergeAttemptFailed,
    StallCheckErrors,
    UnknownItem,
)
from batchline.domain.lifecycle import COMPLETED, CONSOLIDATED, CONSOLIDATING, CONSOLIDATION_FAILED, OPEN_STATUSES
from batchline.domain.messages import (
    BatchSummary,
    CompletionMessage,
    ConsolidationRequest,
    PushEnvelope,
    WorkMessage,
    decode_data,
    encode,
    parse_model,
)
from batchline.flows import control as control_actions
from batchline.flows import merge_record as merge_recovery
from batchline.flows.consolidation_request import request_consolidation_if_done
from batchline.flows.dispatch import StartResult, expected_items, start_batch  # noqa: F401 - the coordinator's routes
from batchline.flows.leases import LeaseKeeper
from batchline.flows.stall import stall_check  # noqa: F401 - the coordinator's routes
from batchline.logs import log_event
from batchline.topology import TOPOLOGY

DEAD_LETTER_SOURCES = TOPOLOGY.dead_letter_sources()  # work, completions, consolidation, control


# -- completions and dead letters -------------------------------------------------------------
def handle_completion(clients: Clients, envelope: PushEnvelope) -> str:
    return _record_completion(clients, parse_model(CompletionMessage, decode_data(envelope)),
                              envelope.message.message_id)


def _check_completion(store: BatchStore, msg: CompletionMessage) -> tuple[str, dict, ItemSnapshot]:
    """What a completion is, from batch state alone (no query: its write is verified in bulk with the
    batch's other claims before the consolidation is claimed, batchline/domain/claims.py): 'claim' (news),
    'duplicate' (a redelivery of the recorded claim), 'second_write' (the item already claims another
    write: never recorded, so never merged), 'late' (its batch moved past consolidation) or 'short'
    (it claims fewer rows than the item's complete work, item_shape.py). Raises InvalidMessage when it
    cannot be true whatever is staged (another table than its batch's), UnknownItem for an unknown item."""
    if msg.staging_table != ids.batch_staging_table(msg.batch_id):
        raise InvalidMessage(f"staging table {msg.staging_table} is not the staging table of batch {msg.batch_id}")
    batch, item = store.batch_and_item_snapshots(msg.batch_id, msg.item_id)
    if batch is None or item is None:
        raise UnknownItem(f"batch {msg.batch_id} has no item {msg.item_id}")
    if lc.completion_is_recorded(item.data, msg.write_id, msg.row_count):
        return "duplicate", batch, item
    if item.data["status"] == COMPLETED:
        return "second_write", batch, item
    if batch["status"] not in OPEN_STATUSES:
        return "late", batch, item
    if msg.row_count != item_shape.EXPECTED_ROWS:
        return "short", batch, item
    return "claim", batch, item


def _record_completion(clients: Clients, msg: CompletionMessage, claimant: str) -> str:
    store = BatchStore(clients.fs)
    kind, batch, item = _check_completion(store, msg)
    ctx = {"batch_id": msg.batch_id, "item": msg.item_id, "write_id": msg.write_id, "row_count": msg.row_count}
    if kind == "short":
        return _record_incomplete(clients, msg, claimant, f"write {msg.write_id} of {msg.item_id} claims "
                                  f"{msg.row_count} rows; the item's work is {item_shape.EXPECTED_ROWS}")
    if kind == "late":
        # Merged already (recovered from its staged write before this completion came) or not: then the
        # batch reported the item failed or missing, and the daily reconciliation finishes or re-runs it.
        why = "completion arrived after its batch moved past consolidation; its write is not part of the MERGE"
        if item.data["status"] == COMPLETED:
            log_event("completion_after_merge", batch_status=batch["status"], message=why, **ctx)
        else:
            log_event("late_completion", severity="ERROR", batch_status=batch["status"], message=why, **ctx)
        return "late"
    if kind == "second_write":
        log_event("completion_second_write", severity="WARNING", recorded_write_id=item.data.get("write_id"),
                  message="the item already claims another write; this completion is not recorded and its "
                  "write is never merged (a redelivered attempt's, or a forgery)", **ctx)
        result = "second_write"
        may_be_done = store.may_be_done(batch, msg.item_id)
    elif kind == "duplicate":
        # A redelivery: its first delivery may have died between the record and the request below.
        log_event("completion_duplicate", **ctx)
        result, may_be_done = "duplicate", store.may_be_done(batch, msg.item_id)
    else:
        result, may_be_done = store.record_completion_counted(
            msg.batch_id, msg.item_id, msg.staging_table, msg.row_count, msg.attempt, msg.write_id, batch, item)
        log_event("item_completed" if result == "recorded" else "completion_duplicate", **ctx)
    # The exact pending query, and the claims' verification, run only when the batch may be done.
    if may_be_done:
        request_consolidation_if_done(clients, msg.batch_id, claimant)
    return result


def _record_incomplete(clients: Clients, msg: CompletionMessage, claimant: str, reason: str) -> str:
    """An incomplete write fails its item, with the reason, where the operator sees it (status, audit),
    instead of leaving it pending until the stall check: a later complete write's completion still
    overrides the failure (lifecycle.decide_completion), and a completed item stays completed."""
    result, may_be_done = BatchStore(clients.fs).record_failure_counted(
        msg.batch_id, msg.item_id, f"{item_shape.INCOMPLETE_WRITE}: {reason}")
    log_event("completion_incomplete", severity="ERROR", batch_id=msg.batch_id, item=msg.item_id,
              write_id=msg.write_id, row_count=msg.row_count, result=result, error=reason)
    if may_be_done:
        request_consolidation_if_done(clients, msg.batch_id, claimant)
    return "incomplete"


def _check_work(store: BatchStore, msg: WorkMessage) -> dict:
    """A dead-lettered work message must name an item as batch state knows it (as the worker checks);
    returns the item document (with the last delivery's error, delivery_errors.py)."""
    batch = store.get_batch(msg.batch_id)
    item = store.get_item(msg.batch_id, msg.item_id) if batch else None
    if item is None:
        raise UnknownItem(f"batch {msg.batch_id} has no item {msg.item_id}")
    if item.get("game_id") != msg.game_id or batch.get("game_date") != msg.game_date.isoformat():
        raise InvalidMessage(f"dead-lettered work message for {msg.item_id} disagrees with batch state")
    return item


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
            last_error = _check_work(store, msg).get(delivery_errors.LAST_ERROR)
            DeadLetterLog(clients.fs).record(msg.batch_id, msg.item_id, envelope.message.message_id, attempts,
                                             envelope=envelope, payload=msg.model_dump(mode="json"),
                                             last_error=last_error)
            result, may_be_done = store.record_failure_counted(
                msg.batch_id, msg.item_id, delivery_errors.dead_letter_reason(attempts, last_error),
                dead_lettered=True)
            log_event("item_dead_lettered", severity="ERROR", batch_id=msg.batch_id, item=msg.item_id,
                      result=result, delivery_attempts=attempts, last_error=delivery_errors.summary(last_error))
            if may_be_done:
                request_consolidation_if_done(clients, msg.batch_id, envelope.message.message_id)
            return result
        if source == "completions":
            # The staged write is durable; recording the completion here keeps its rows.
            msg = parse_model(CompletionMessage, payload)
            log_event("completion_dead_lettered", severity="ERROR", batch_id=msg.batch_id, item=msg.item_id,
                      delivery_attempts=attempts)
            return _record_completion(clients, msg, envelope.message.message_id)
        if source == "control":
            return control_actions.handle_control_dead_letter(clients, ctl.parse_control(payload), attempts)
        req = parse_model(ConsolidationRequest, payload)
        # Only a consolidation nobody is running can fail this way (lifecycle.decide_consolidation_dead_letter):
        # a late dead letter for a batch consolidated, re-opened or held by a live delivery changes
        # nothing. A consolidation that failed permanently answered 2xx; one that dead-letters failed
        # transiently every time.
        failed = store.consolidation_dead_lettered(req.batch_id,
                                                   f"consolidation dead-lettered after {attempts} attempts")
        log_event("consolidation_failed" if failed else "consolidation_dead_letter_ignored",
                  severity="ERROR" if failed else "WARNING", batch_id=req.batch_id, reason="dead-lettered",
                  failure_kind=lc.TRANSIENT, delivery_attempts=attempts)
        return "recorded" if failed else "ignored"
    except (InvalidMessage, UnknownItem) as exc:
        store.record_rejected(envelope.message.message_id, envelope.subscription, raw, str(exc), source=source)
        log_event("message_rejected", severity="ERROR", source=source,
                  message_id=envelope.message.message_id, error=str(exc))
        return "rejected"


# -- consolidation ----------------------------------------------------------------------------
def handle_consolidation(clients: Clients, envelope: PushEnvelope) -> str:
    """Each delivery gets a lease token of its own: two deliveries of one message (Pub/Sub's
    at-least-once) are two contenders, and only the lease holder runs the MERGE."""
    req = parse_model(ConsolidationRequest, decode_data(envelope))
    store = BatchStore(clients.fs)
    token = uuid.uuid4().hex
    if req.reason == "manual":
        batch = store.get_batch(req.batch_id)
        if batch is None:
            raise UnknownItem(f"no batch {req.batch_id}")
        if batch["status"] == CONSOLIDATION_FAILED:
            result, batch = store.reopen(req.batch_id, envelope.message.message_id, auto=False)
            if result != "reopened":
                store.set_batch_fields(req.batch_id, {"reopen_refused": result[:2000]})
                log_event("consolidation_reopen_refused", severity="ERROR", batch_id=req.batch_id, reason=result)
                return "refused"
            log_event("consolidation_reopened", batch_id=req.batch_id, by="operator",
                      generation=batch.get("consolidation_generation"))
    verdict, batch = store.take_lease(req.batch_id, token)
    if verdict != "run":
        log_event("consolidation_skipped", batch_id=req.batch_id, verdict=verdict, batch_status=batch["status"])
        if batch["status"] == CONSOLIDATED and not batch.get("summary_message_id"):
            publish_summary(clients, batch)  # the first delivery failed between its result and its summary
        return verdict
    finished = False
    try:
        with LeaseKeeper(store, req.batch_id, token) as keeper:
            outcome = consolidate_batch(clients, req.batch_id, batch, token, keeper)
        finished = True
        return outcome
    finally:
        if not finished:
            # Let the redelivery in at once instead of making it wait out the lease.
            store.release_lease(req.batch_id, token)


def consolidate_batch(clients: Clients, batch_id: str, batch: dict, lease: str,
                      keeper: LeaseKeeper | None = None) -> str:
    """Inventory, one MERGE, verification, cleanup, result. Every write is conditional on still
    holding the lease, so nothing written here can overwrite another writer's state."""
    s = clients.settings
    store = BatchStore(clients.fs)
    game_date = dt.date.fromisoformat(batch["game_date"])
    items = store.items(batch_id)
    inv = cons.inventory(clients.bq, s, batch_id, items)
    merged = batch.get("merge_result")
    manifest, pin, generation, attempt, committed = _what_to_merge(clients, store, batch, inv, items)
    expected = int(batch["expected_items"])
    log_event("staging_inventory", batch_id=batch_id, expected_items=expected, staged_items=len(manifest),
              completed=len(inv.expected_completed), failed=len(inv.failed_items), pending=len(inv.pending_items),
              recovered=inv.recovered[:500], abandoned_writes=inv.abandoned_writes,
              unknown_items=inv.unknown_items[:100], unmergeable=inv.unmergeable[:100])
    gap = expected - len(manifest)
    if gap:
        log_event("staging_gap", severity="WARNING", batch_id=batch_id, missing_staged_items=gap,
                  missing_items=sorted(set(i["item_id"] for i in items) - set(manifest))[:500],
                  completed_without_write=inv.missing_writes)
    injected = faults_mod.parse(batch.get("faults")) if s.allow_faults else faults_mod.FaultSpec()
    if merged is None and manifest and ((keeper is not None and keeper.lost) or not store.renew_lease(batch_id, lease)):
        # checked right before the MERGE: a dead letter, a re-open or a newer holder may have moved the batch
        log_event("consolidation_lease_lost", severity="ERROR", batch_id=batch_id, lease=lease,
                  message="lost the batch before its MERGE; the delivery now holding it consolidates")
        return "lease_lost"
    try:
        if merged is None and manifest:
            result = cons.merge_staging(
                clients.bq, s, batch_id, game_date, pin, len(manifest),
                merge_date=game_date + dt.timedelta(days=1) if injected.zero_merge else None,
                generation=generation, attempt=attempt,
                fail_transiently=committed is None and attempt < injected.merge_transient,
                pause_in_merge_s=injected.pause_in_merge)
            merged = {**result.as_dict(), "staged_rows_total": inv.staged_rows_total,
                      "recovered": capped(inv.recovered), "recovered_count": len(inv.recovered),
                      "abandoned_writes": inv.abandoned_writes}
            # Durable before any deletion, so a redelivery skips straight to cleanup.
            recorded = merge_recovery.record_merge(store, batch_id, lease, merged, result.job_id, injected,
                                                   (result.verified_rows, result.verified_items))
            if recorded == merge_recovery.LEASE_LOST:
                log_event("consolidation_lease_lost", severity="ERROR", batch_id=batch_id, job_id=result.job_id,
                          message="the MERGE is done; the delivery now holding the batch finds its job and records it")
            if recorded != merge_recovery.RECORDED:
                return recorded
            log_event("merge_verified", batch_id=batch_id, job_id=result.job_id,
                      affected_rows=result.affected_rows, verified_rows=result.verified_rows,
                      timings_s=result.timings_s)
            time.sleep(injected.pause_after_merge)  # the pause_after_merge fault: killed before cleanup
    except MergeAttemptFailed as exc:
        moved = store.next_merge_attempt(batch_id, lease, attempt)
        log_event("merge_attempt_failed", severity="ERROR", batch_id=batch_id, job_id=exc.job_id,
                  attempt=attempt, next_attempt=attempt + 1 if moved else None, error=str(exc))
        raise
    except ConsolidationError as exc:
        # A re-open runs a new MERGE after this one (merge_recovery never re-records a rejected job).
        store.transition(batch_id, [CONSOLIDATING], {
            "status": CONSOLIDATION_FAILED, "error": str(exc)[:4000], "failure_kind": lc.PERMANENT,
            "staged_items_kept": len(manifest),
            "rejected_merge_jobs": firestore.ArrayUnion([cons.merge_job_id(batch_id, generation, attempt)])},
            lease_token=lease)
        log_event("consolidation_failed", severity="ERROR", batch_id=batch_id, error=str(exc),
                  failure_kind=lc.PERMANENT, staged_items_kept=len(manifest))
        return "failed"
    except Exception as exc:
        if cons.is_dml_rate_limit(exc):
            log_event("dml_rate_limited", severity="ERROR", batch_id=batch_id, error=str(exc))
        raise
    merged = merged or {}
    kept_previous = _kept_previous(clients, batch_id, game_date, set(manifest))
    deleted = _drop_staging(clients, batch_id, inv.staged_rows_total)
    merged_items = int(merged.get("verified_items", 0))
    missing = sorted(set(i["item_id"] for i in items) - set(manifest) - set(inv.failed_items))
    coverage = round(100.0 * merged_items / expected, 2) if expected else 0.0
    finished = merge_recovery.record_final(store, batch_id, lease, merged, {
        "status": CONSOLIDATED,
        "merged_items": merged_items,
        "merged_rows": int(merged.get("verified_rows", 0)),
        "failed_items": capped(inv.failed_items), "failed_items_count": len(inv.failed_items),
        "missing_items": capped(missing), "missing_items_count": len(missing),
        "recovered_items": capped(inv.recovered), "recovered_items_count": len(inv.recovered),
        "kept_previous_items": kept_previous,
        "staging_gap": gap,  # expected items without a staged write at consolidation (F9 layer 4)
        "completed_without_write": capped(inv.missing_writes),
        "completed_without_write_count": len(inv.missing_writes),
        "abandoned_writes": inv.abandoned_writes,
        "staging_table_dropped": deleted,
        "coverage_pct": coverage,
        "consolidated_at": now(),
    })
    if finished == merge_recovery.UNRECORDABLE:
        return merge_recovery.UNRECORDABLE
    if not finished:
        log_event("consolidation_lease_lost", severity="ERROR", batch_id=batch_id, lease=lease,
                  message="the batch changed under this consolidation; its result was not written")
        return "lease_lost"
    log_event("consolidation_succeeded", batch_id=batch_id, merged_items=merged_items,
              merged_rows=merged.get("verified_rows", 0), coverage_pct=coverage,
              failed_items=len(inv.failed_items), missing_items=len(missing), staging_table_dropped=deleted,
              kept_previous_items=len(kept_previous))
    if coverage < s.coverage_warning_pct:
        log_event("coverage_low", severity="ERROR" if coverage < s.coverage_critical_pct else "WARNING",
                  batch_id=batch_id, warning_pct=s.coverage_warning_pct, critical_pct=s.coverage_critical_pct,
                  coverage_pct=coverage, failed_items=inv.failed_items[:100], missing_items=missing[:100])
    publish_summary(clients, store.get_batch(batch_id) or {})
    return "consolidated"


LIST_CAP = 1000  # item lists kept on the batch document; each has its full count beside it (F3: 1 MiB)


def capped(items) -> list:
    return sorted(items)[:LIST_CAP]


def _what_to_merge(clients: Clients, store: BatchStore, batch: dict, inv: cons.Inventory, items: list[dict],
                   ) -> tuple[dict[str, str], str | None, int, int, merge_recovery.CommittedMerge | None]:
    """(manifest, pin, generation, attempt, committed job) of this consolidation; `inv` is brought in line
    with the manifest. Recorded result: what it merged. Else a MERGE that already ran (merge_recovery.py):
    its attempt and pinned manifest. Else the current attempt, its manifest pinned before any job (the
    pin's rows in the manifest table, batchline/adapters/manifests.py; the pin document names them)."""
    batch_id, merged = batch["batch_id"], batch.get("merge_result")
    attempt = int(batch.get("merge_attempt") or 0)
    generation = int(batch.get("consolidation_generation") or 0)
    if merged is not None:
        # A redelivery after the MERGE was verified: what was merged is its pin, whatever cleanup dropped.
        manifest = manifests.read(clients.bq, clients.settings, batch_id, [merged["pin"]])[merged["pin"]]
        inv.missing_writes = [i for i in inv.expected_completed if i not in manifest]
        inv.recovered = list(merged.get("recovered", []))
        inv.abandoned_writes = int(merged.get("abandoned_writes", 0))
        inv.staged_rows_total = int(merged.get("staged_rows_total", inv.staged_rows_total))
        return manifest, merged["pin"], generation, attempt, None
    committed = merge_recovery.find_committed(clients.bq, store, batch)
    if committed is not None:
        # An earlier attempt's MERGE ran (or runs): record that job from the manifest it read, never a
        # second MERGE. Its result was lost, e.g. to a failed record or a dead letter.
        generation, attempt, pinned = committed.generation, committed.attempt, committed.pinned
        log_event("merge_found", batch_id=batch_id, job_id=committed.job_id, job_state=committed.state,
                  message="this batch's MERGE already ran; verifying and recording it instead of merging again")
    else:
        if not inv.writes:
            return {}, None, generation, attempt, None
        # Fixed before the job exists: a redelivery of this attempt waits for the same job, so it must
        # verify and record the manifest that job read, not a newer inventory.
        pinned = store.get_pin(batch_id, generation, attempt) or _pin(clients, store, batch, inv, items,
                                                                        generation, attempt)
    manifest = manifests.read(clients.bq, clients.settings, batch_id, [pinned["pin"]])[pinned["pin"]]
    inv.recovered, inv.missing_writes = list(pinned["recovered"]), list(pinned["missing_writes"])
    inv.staged_rows_total, inv.abandoned_writes = int(pinned["staged_rows_total"]), int(pinned["abandoned_writes"])
    return manifest, pinned["pin"], generation, attempt, committed


def _pin(clients: Clients, store: BatchStore, batch: dict, inv: cons.Inventory, items: list[dict],
         generation: int, attempt: int) -> dict:
    """Write this attempt's manifest rows, then the pin document that names them (the first wins)."""
    batch_id, manifest = batch["batch_id"], inv.manifest()
    pin = ids.new_pin(generation, attempt)
    scheduled = batch.get("scheduled_items") or [i["item_id"] for i in items]
    manifests.write(clients.bq, clients.appender, clients.settings,
                    manifests.rows(batch_id, pin, manifest, inv.recovered, scheduled, now()))
    return store.pin_manifest(batch_id, generation, attempt, {
        "pin": pin, "merge_items": len(manifest), "scheduled_items": len(set(scheduled)),
        "staged_rows_total": inv.staged_rows_total, "abandoned_writes": inv.abandoned_writes,
        "recovered": capped(inv.recovered), "recovered_count": len(inv.recovered),
        "missing_writes": capped(inv.missing_writes), "missing_writes_count": len(inv.missing_writes)})


def _drop_staging(clients: Clients, batch_id: str, staged_rows_total: int) -> bool:
    """Drop the batch staging table after verification, unless rows arrived since the inventory (a
    worker that checked the batch was open just before consolidation): then the table is kept for the
    daily reconciliation, which merges or supersedes those rows (batchline/flows/orphans.py). The count and
    the drop are two calls: an append landing between them goes with the table, but its item is one the
    batch reported failed or missing (not in the manifest), which the reconciliation re-runs."""
    now_staged = sum(w.rows for ws in staging.staged_writes(clients.bq, clients.settings, batch_id).values()
                     for w in ws.values())
    if now_staged > staged_rows_total:
        log_event("staging_kept_late_rows", severity="WARNING", batch_id=batch_id,
                  rows_at_inventory=staged_rows_total, rows_now=now_staged,
                  message="rows were staged after the inventory; the reconciliation finishes them")
        return False
    staging.drop_batch_table(clients.bq, clients.settings, batch_id)  # 0 when a redelivery finds it gone
    return True


def publish_summary(clients: Clients, batch: dict) -> None:
    """The consolidated batch's summary, from its recorded result; its message id is recorded, so a
    redelivery after a failed publish (the batch is already `done`) sends it, and only then."""
    summary = BatchSummary(batch_id=batch["batch_id"], game_date=batch["game_date"], status=CONSOLIDATED,
                           expected_items=int(batch["expected_items"]), merged_items=int(batch["merged_items"]),
                           failed_items=list(batch.get("failed_items") or []),
                           missing_items=list(batch.get("missing_items") or []),
                           merged_rows=int(batch.get("merged_rows") or 0), coverage_pct=float(batch["coverage_pct"]))
    message_id = clients.publish("summary", encode(summary), batch_id=batch["batch_id"])
    BatchStore(clients.fs).set_batch_fields(batch["batch_id"], {"summary_message_id": message_id})


def _kept_previous(clients: Clients, batch_id: str, game_date: dt.date, merged: set[str]) -> dict[str, str]:
    """Players this batch did not merge whose earlier rows stay active: player -> the batch that wrote them."""
    s = clients.settings
    rows = clients.bq.query(cons.kept_previous_sql(f"`{s.main_table_id}`"), job_config=bigquery.QueryJobConfig(
        query_parameters=cons.batch_params(batch_id, game_date))).result()
    kept = {r["player_lookup"]: r["batch_id"] for r in rows if r["player_lookup"] not in merged}
    if kept:
        log_event("kept_previous_rows", severity="WARNING", batch_id=batch_id, count=len(kept),
                  items=sorted(kept)[:200], message="these players keep rows of an earlier run of the date")
    return dict(sorted(kept.items())[:1000])


__all__ = ["start_batch", "handle_completion", "handle_dead_letter", "handle_consolidation", "stall_check",
           "consolidate_batch", "StallCheckErrors", "expected_items", "StartResult", "CONSOLIDATED"]
