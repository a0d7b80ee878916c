"""Dead letters: read them (`batchline dlq list`) and replay them (the control request
`replay_dead_letters`, run by the coordinator, which already publishes to every source topic).

Each source topic's dead-letter topic has a pull subscription `<prefix>-<topic>-dlq-pull` that keeps
every dead letter. Listing the work dead letters of one batch reads the durable records the
dead-letter handler writes (`batchline.adapters.dead_letter_records`): no lease, so concurrent readers cannot hide
messages from each other (or from a replay), and no wait. Any other listing pulls and then releases
(ack deadline 0), so nothing leaves (batchline/adapters/dead_letter_subs.py); the sources are pulled in
parallel, each waiting PULL_WAIT_S at most for an answer (a pull holds an empty subscription until its
deadline). Replaying acknowledges a message only after what replaces it is durable:

- work: the items are run again as a repair batch of their date (`repair.start_repair`); republishing
  the original work message would not help, since the worker skips work of a batch that moved on;
- consolidation: the batch is re-opened and consolidated again (`repair.consolidate_again`);
- completions and control: the original data and attributes are republished to the source topic and
  the publish is awaited.

What is not replayed (other batches, beyond `limit`, refused repairs) is released at once.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from batchline.adapters import dead_letter_records as dead_letters
from batchline.adapters.clients import Clients
from batchline.adapters.dead_letter_records import DEAD_LETTER_ATTRIBUTE_PREFIX
from batchline.adapters.dead_letter_subs import DeadLetter, DeadLetterSubscription
from batchline.adapters.delivery_errors import LAST_ERROR
from batchline.domain import ids
from batchline.domain.errors import BatchConflict, InvalidMessage
from batchline.flows.repair import consolidate_again, start_repair
from batchline.logs import log_event


def describe(m: DeadLetter) -> dict:
    """A dead letter for people and scripts: ids, attributes and what its payload names."""
    info: dict = {"message_id": m.message_id, "publish_time": m.publish_time.isoformat() if m.publish_time else None,
                  "attributes": dict(m.attributes), "batch_id": None, "item_id": None, "payload": None,
                  "payload_error": None}
    try:
        payload = json.loads(m.data)
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        info["payload"] = payload
        batch_id, item_id = payload.get("batch_id"), payload.get("item_id")
        info["batch_id"] = ids.validate_batch_id(batch_id) if batch_id is not None else None
        info["item_id"] = ids.validate_item_id(item_id) if item_id is not None else None
    except (ValueError, RecursionError) as exc:
        info["payload_error"] = str(exc)[:300]
        info["data_b64"] = base64.b64encode(m.data[:2048]).decode()
    return info


def list_dead_letters(clients: Clients, source: str) -> list[dict]:
    with DeadLetterSubscription(clients, source) as subs:
        received = subs.pull_all()
        try:
            found = [{"source": source, **describe(r), "read_from": "pull"} for r in received]
        finally:
            subs.release([r.ack_id for r in received])
    return _with_item_state(clients, found) if source == "work" else found


def _with_item_state(clients: Clients, found: list[dict]) -> list[dict]:
    """Pulled work dead letters, with their item's last delivery error and repair batch (one read)."""
    keys = sorted({(m["batch_id"], m["item_id"]) for m in found if m["batch_id"] and m["item_id"]})
    docs = clients.batches.items_by_key(keys)
    for m in found:
        doc = docs.get((m["batch_id"], m["item_id"]), {})
        m.update(last_error=doc.get(LAST_ERROR), replayed_in=doc.get("replayed_in"))
    return found


def listed_dead_letters(clients: Clients, sources: list[str], batch_id: str | None, *,
                        include_replayed: bool = False) -> list[dict]:
    """What `batchline dlq list` shows: the work dead letters of a named batch from their durable
    records (a replayed one only with `include_replayed`), everything else pulled and released, the
    sources in parallel; filtered to `batch_id` when given."""
    pulled = [s for s in sources if not (s == "work" and batch_id is not None)]
    with ThreadPoolExecutor(max_workers=max(1, len(pulled))) as pool:
        futures = {s: pool.submit(list_dead_letters, clients, s) for s in pulled}
        found = []
        for s in sources:
            if s in futures:
                found += [m for m in futures[s].result() if batch_id is None or m["batch_id"] == batch_id]
            else:
                found += _work_records(clients, batch_id, include_replayed)
    return found


def _work_records(clients: Clients, batch_id: str, include_replayed: bool) -> list[dict]:
    records = clients.dead_letter_log.records(ids.validate_batch_id(batch_id))
    keys = [(batch_id, i) for i in sorted({r["item_id"] for r in records})]
    replayed_in = {item: doc.get("replayed_in") for (_, item), doc in clients.batches.items_by_key(keys).items()}
    return dead_letters.listed(batch_id, records, replayed_in, include_replayed=include_replayed)


def replay_dead_letters(clients: Clients, source: str, batch_id: str | None, limit: int, claimant: str) -> dict:
    acked: set[str] = set()
    received: list[DeadLetter] = []
    result: dict = {"source": source, "batch_filter": batch_id, "scanned": 0, "replayed": [], "not_replayed": [],
                    "repair_batches": [], "reconsolidated_batches": [], "skipped_unparsable": 0}
    with DeadLetterSubscription(clients, source) as subs:
        try:
            received = subs.pull_all()
            result["scanned"] = len(received)
            chosen = []
            for r in received:
                info = describe(r)
                if info["payload_error"]:
                    result["skipped_unparsable"] += 1
                elif len(chosen) < limit and (batch_id is None or info["batch_id"] == batch_id):
                    chosen.append((r, info))
            if source == "work":
                _replay_work(clients, subs, chosen, acked, result)
            else:
                for r, info in chosen:
                    if source == "consolidation":
                        ok, outcome = consolidate_again(clients, ids.validate_batch_id(info["batch_id"]), claimant)
                        if not ok:
                            result["not_replayed"].append({"message_id": info["message_id"], **outcome})
                            continue
                        result["reconsolidated_batches"].append(info["batch_id"])
                    else:
                        attrs = {k: v for k, v in r.attributes.items()
                                 if not k.startswith(DEAD_LETTER_ATTRIBUTE_PREFIX)}
                        clients.publish(source, r.data, **{**attrs, "replayed_from": r.message_id})
                    subs.acknowledge([r.ack_id])
                    acked.add(r.ack_id)
                    result["replayed"].append({"message_id": info["message_id"], "batch_id": info["batch_id"],
                                               "item_id": info["item_id"]})
        finally:
            subs.release([r.ack_id for r in received if r.ack_id not in acked])
    log_event("dead_letters_replayed", source=source, batch_id=batch_id, replayed=len(result["replayed"]),
              not_replayed=len(result["not_replayed"]), repair_batches=result["repair_batches"])
    return result


def _replay_work(clients: Clients, subs: DeadLetterSubscription, chosen: list, acked: set[str], result: dict) -> None:
    """One repair batch per date; its dead letters are acknowledged once the batch is dispatched."""
    by_date: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    ack_by_date: dict[str, list] = defaultdict(list)
    for r, info in chosen:
        game_date = (info["payload"] or {}).get("game_date")
        if info["batch_id"] is None or info["item_id"] is None or not isinstance(game_date, str):
            result["not_replayed"].append({"message_id": info["message_id"], "error": "not a work message"})
            continue
        by_date[game_date][info["batch_id"]].add(info["item_id"])
        ack_by_date[game_date].append((r, info))
    for game_date, batches in sorted(by_date.items()):
        try:
            started = start_repair(clients, ids.parse_game_date(game_date),
                                   {b: sorted(i) for b, i in batches.items()})
        except (BatchConflict, InvalidMessage, ValueError) as exc:
            for _, info in ack_by_date[game_date]:
                result["not_replayed"].append({"message_id": info["message_id"], "batch_id": info["batch_id"],
                                               "item_id": info["item_id"], "error": str(exc)[:500]})
            continue
        subs.acknowledge([r.ack_id for r, _ in ack_by_date[game_date]])
        acked.update(r.ack_id for r, _ in ack_by_date[game_date])
        result["repair_batches"].append({"batch_id": started.batch_id, "game_date": game_date,
                                         "expected_items": started.expected_items})
        for _, info in ack_by_date[game_date]:
            result["replayed"].append({"message_id": info["message_id"], "batch_id": info["batch_id"],
                                       "item_id": info["item_id"], "replayed_in": started.batch_id})
