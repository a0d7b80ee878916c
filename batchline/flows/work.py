"""The worker: one work item in, one acknowledged append to the batch staging table and one
completion event out.

Order matters (F1): compute -> append the rows, tagged with this attempt's write id, to the batch's
staging table and wait for the Storage Write API to acknowledge them -> publish the completion naming
the write id and row count, and wait for Pub/Sub to accept it -> only then report success. Any exception propagates, the
HTTP adapter answers non-2xx, Pub/Sub redelivers, and after the last attempt dead-letters the message,
where the coordinator records the item as failed. Workers never touch the main table (F2).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from batchline.adapters.batch_store import BatchStore
from batchline.adapters.clients import Clients
from batchline.adapters.delivery_errors import recorded_on_failure
from batchline.adapters.staging import ITEM_COLUMN, WRITE_COLUMN, live_schema
from batchline.domain import faults as faults_mod
from batchline.domain import ids, item_shape
from batchline.domain.errors import FaultInjected, InvalidMessage, InvalidRows
from batchline.domain.messages import (
    MAX_DELIVERY_ATTEMPT,
    CompletionMessage,
    PushEnvelope,
    WorkMessage,
    decode_data,
    encode,
    parse_model,
)
from batchline.domain.predictor import PlayerContext, Predictor, load_predictor, prediction_id
from batchline.domain.statuses import COMPLETED, OPEN_STATUSES
from batchline.domain.work_check import check_work_message
from batchline.logs import log_event


@dataclass(frozen=True)
class WorkOutcome:
    status: str  # "staged" | "duplicate" | "batch_closed"
    batch_id: str
    item_id: str
    staging_table: str | None = None
    row_count: int = 0
    write_id: str | None = None


def build_rows(msg: WorkMessage, predictor: Predictor, now: dt.datetime) -> list[dict]:
    """The predictor's rows plus the ids and bookkeeping columns the main table needs."""
    ctx = PlayerContext(msg.game_date, msg.item_id, msg.game_id)
    rows = []
    for p in predictor.predict(ctx):
        rows.append({
            **p,
            "prediction_id": prediction_id(ctx, p["system_id"], p["prop_type"]),
            "game_date": msg.game_date.isoformat(),
            "game_id": msg.game_id,
            "player_lookup": msg.item_id,
            "batch_id": msg.batch_id,
            "created_at": now.isoformat(),
            "updated_at": now.isoformat(),
            "is_active": True,
        })
    return rows


def check_rows(rows: list[dict]) -> None:
    """Refuse an empty result (a completion of 0 rows could not be told from a forged one, and every
    scheduled player gets predictions), duplicate prediction ids (a MERGE would insert both) and any
    other shape than one row per configured system x prop (item_shape.py): a short item would count
    as done. Raised before the write, so the delivery fails, is retried and dead-letters loudly."""
    if not rows:
        raise InvalidRows("predictor produced no rows")
    seen: set[str] = set()
    for r in rows:
        if r["prediction_id"] in seen:
            raise InvalidRows(f"predictor produced prediction id {r['prediction_id']} twice "
                              f"({r['system_id']}/{r['prop_type']})")
        seen.add(r["prediction_id"])
    problem = item_shape.rows_problem(rows)
    if problem:
        raise InvalidRows(f"predictor output {problem}")


def handle_work(clients: Clients, envelope: PushEnvelope, predictor: Predictor | None = None) -> WorkOutcome:
    msg = parse_model(WorkMessage, decode_data(envelope))
    store = clients.batches
    batch, item = store.get_batch_and_item(msg.batch_id, msg.item_id)
    item = check_work_message(batch, item, msg)
    if item["status"] == COMPLETED:
        log_event("work_duplicate", message="item already completed; redelivery ignored",
                  batch_id=msg.batch_id, item=msg.item_id)
        return WorkOutcome("duplicate", msg.batch_id, msg.item_id, item.get("staging_table"),
                           item.get("row_count") or 0, item.get("write_id"))
    if batch["status"] not in OPEN_STATUSES:
        # A redelivery after the batch moved on (superseded or consolidating): writing now would
        # stage rows nobody merges. The item's state already says what happened to it.
        log_event("work_skipped", severity="WARNING", message=f"batch is {batch['status']}",
                  batch_status=batch["status"], item_status=item["status"], batch_id=msg.batch_id,
                  item=msg.item_id)
        return WorkOutcome("batch_closed", msg.batch_id, msg.item_id)
    log_ctx: dict = {"batch_id": msg.batch_id, "item": msg.item_id, "attempt": envelope.delivery_attempt or 0}
    # From here on a failure is this item's: its error is kept on the item document (delivery_errors.py).
    with recorded_on_failure(store.item_ref(msg.batch_id, msg.item_id), log_ctx):
        return _deliver(clients, store, msg, batch, envelope, predictor, log_ctx)


def _deliver(clients: Clients, store: BatchStore, msg: WorkMessage, batch: dict, envelope: PushEnvelope,
             predictor: Predictor | None, log_ctx: dict) -> WorkOutcome:
    """Compute, append to the staging table, publish the completion: in that order (F1)."""
    injected = (faults_mod.parse(batch.get("faults"))
                if clients.settings.allow_faults else faults_mod.FaultSpec())
    # Pub/Sub numbers deliveries on subscriptions with a dead-letter policy; the emulator does not, so
    # there the attempt is counted in the item document, but only when a fault spec needs it (draws
    # are per attempt): a transaction per item to number what nothing else reads costs ~10 ms. 0 =
    # not numbered. The write id, not the attempt, is what tells one delivery's rows from another's.
    attempt = envelope.delivery_attempt or (store.count_attempt(msg.batch_id, msg.item_id) if injected else 0)
    log_ctx["attempt"] = attempt
    if attempt > MAX_DELIVERY_ATTEMPT:  # checked before the write: the completion could not carry it
        raise InvalidMessage(f"attempt {attempt} of {msg.item_id} exceeds {MAX_DELIVERY_ATTEMPT}")
    table = ids.batch_staging_table(msg.batch_id)
    table_id = clients.settings.staging_table_id(table)
    write_id = ids.new_write_id()
    log_ctx["write_id"] = write_id
    rows = build_rows(msg, predictor or load_predictor(), dt.datetime.now(dt.UTC))
    check_rows(rows)
    try:
        if injected.fires("staging_write", msg.item_id, attempt):
            raise FaultInjected("injected staging write failure")
        schema = live_schema(clients.bq, table_id)
        count = clients.appender.append(table_id, schema, [
            {**r, ITEM_COLUMN: msg.item_id, WRITE_COLUMN: write_id} for r in rows])
    except Exception as exc:
        log_event("staging_write_failed", severity="ERROR", message=f"staging write failed: {exc}",
                  staging_table=table, error_type=type(exc).__name__, **log_ctx)
        raise
    log_event("staging_write_succeeded", staging_table=table, row_count=count, **log_ctx)

    completion = CompletionMessage(batch_id=msg.batch_id, item_id=msg.item_id, staging_table=table,
                                   write_id=write_id, row_count=count, write_status="ok", attempt=attempt)
    try:
        if injected.fires("completion_publish", msg.item_id, attempt):
            raise FaultInjected("injected completion publish failure")
        message_id = clients.publish("completions", encode(completion), batch_id=msg.batch_id,
                                     item_id=msg.item_id)
    except Exception as exc:
        # The append is durable but no completion names it: a redelivery appends again under a new
        # write id, and only the write a completion names is merged (or, if none ever arrives, one
        # complete write, recovered at consolidation). This line says why the item is retried.
        log_event("completion_publish_failed", severity="ERROR", message=f"completion publish failed: {exc}",
                  staging_table=table, error_type=type(exc).__name__, **log_ctx)
        raise
    log_event("completion_published", staging_table=table, row_count=count,
              completion_message_id=message_id, **log_ctx)
    return WorkOutcome("staged", msg.batch_id, msg.item_id, table, count, write_id)
