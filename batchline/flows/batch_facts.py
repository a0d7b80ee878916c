"""What the systems of record hold about one batch, gathered once for every report of it (the
ledger, `batchline audit`): Firestore (the batch and item documents, the dead-letter record), the
context table (the schedule), the main table (rows per player and batch, duplicates), the staging
dataset (is the batch's table there) and BigQuery's job list (this batch's MERGEs). Judged by the
pure batchline/domain/accounting.py, so two reports of one batch cannot disagree.

Dead letters are counted from the durable record the dead-letter handler writes in Firestore
(`batchline.adapters.dead_letter_records`), which concurrent readers cannot disturb; the work dead-letter pull
subscription is consulted only for items that would otherwise be missing.
"""

from __future__ import annotations

import datetime as dt
import json

from batchline.adapters import manifests, merge_jobs, queries, staging
from batchline.adapters.clients import Clients
from batchline.adapters.dead_letter_records import dead_lettered_in_item_state
from batchline.adapters.dead_letter_subs import DeadLetterSubscription
from batchline.domain import accounting, ids
from batchline.domain.accounting import BatchFacts
from batchline.domain.errors import InvalidMessage
from batchline.domain.item_shape import Shape
from batchline.domain.messages import WorkMessage, parse_model

SECOND_LOOK_WAIT_S = 10.0  # one pull's wait in dead_letters_in_subscription


def gather(clients: Clients, batch_id: str) -> BatchFacts:
    s = clients.settings
    store = clients.batches
    batch = store.get_batch(ids.validate_batch_id(batch_id))
    if batch is None:
        raise LookupError(f"no batch {batch_id}")
    game_date = dt.date.fromisoformat(batch["game_date"])
    items = {i["item_id"]: i for i in store.items(batch_id)}
    schedule = queries.scheduled_players(clients.bq, s, game_date)
    if batch.get("only_items") is not None:  # a repair batch expects only its items
        schedule &= set(batch["only_items"])
    own: dict[str, Shape] = {}
    others: dict[str, dict[str, int]] = {}
    active_from: dict[str, list[str]] = {}
    for r in queries.rows_by_player_and_batch(clients.bq, s, game_date):
        if r.batch_id == batch_id:
            own[r.player] = r.shape
        else:
            others.setdefault(r.player, {})[r.batch_id] = r.active
        if r.active:
            active_from.setdefault(r.player, []).append(r.batch_id)
    duplicate_ids = queries.duplicate_prediction_ids(clients.bq, s, game_date)
    active_dups = queries.active_duplicates(clients.bq, s, batch_id, game_date)
    dead = dead_lettered_items(clients, batch_id, list(items.values()))
    if (schedule | set(items)) - set(own) - dead:
        dead |= dead_letters_in_subscription(clients, batch_id)
    mine, window = merge_jobs.main_table_merges(clients.bq, s, batch["created_at"], batch_id)
    newest = store.active_batch_of(game_date)
    newest_status = batch["status"] if newest == batch_id else (store.get_batch(newest) or {}).get("status") \
        if newest else None
    return BatchFacts(batch=batch, items=items, schedule=schedule, own_rows=own, other_batches=others,
                      active_from={p: sorted(b) for p, b in active_from.items()}, dead_lettered=dead,
                      duplicate_ids=duplicate_ids, duplicate_active=active_dups,
                      staging_table_exists=staging.batch_table_exists(clients.bq, s, batch_id),
                      merge_jobs=mine, window_dml=window, newest=(newest, newest_status),
                      merged_by_batch=manifests.merged_items(clients.bq, s, batch_id, accounting.merged_pins(batch)))


def dead_lettered_items(clients: Clients, batch_id: str, items: list[dict]) -> set[str]:
    """Items of `batch_id` with a durable dead-letter record: the handler's own record, or the item
    document it marked. Plain reads, so any number of reports may count at once."""
    return (clients.dead_letter_log.items(batch_id) | dead_lettered_in_item_state(items)
            | {i["item_id"] for i in items if i.get("dead_lettered_at")})


def dead_letters_in_subscription(clients: Clients, batch_id: str, max_messages: int = 10_000) -> set[str]:
    """Items of `batch_id` in the work dead-letter pull subscription (pulled, then released with ack
    deadline 0). A pull leases what it returns, so a concurrent reader may see fewer: this is only a
    second look for items the durable record does not account for (e.g. a dead letter whose push to
    the coordinator is still being retried)."""
    found: set[str] = set()
    with DeadLetterSubscription(clients, "work") as subs:
        received = subs.pull_all(max_messages, wait_s=SECOND_LOOK_WAIT_S)
        try:
            for dead in received:
                try:
                    msg = parse_model(WorkMessage, json.loads(dead.data))
                except (InvalidMessage, ValueError):
                    continue
                if msg.batch_id == batch_id:
                    found.add(msg.item_id)
        finally:
            subs.release([dead.ack_id for dead in received])
    return found
