"""The dead-letter topics' pull subscriptions (`<prefix>-<topic>-dlq-pull`), which keep every dead
letter: pull what one holds, acknowledge only what was replaced durably, give the rest back (ack
deadline 0), so reading never removes a dead letter. The one copy that `dlq list`, `dlq replay` and
the ledger's second look share."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from batchline.adapters.clients import Clients

MAX_SCAN = 5000
# How long one pull waits for messages. Without return_immediately (deprecated) Pub/Sub may hold a pull
# until at least one message is available, and the emulator holds an empty one until its deadline:
# 10 s per source made `dlq list` take ~40 s for nothing (docs/failures.md, "Rough edges ... issue 14").
PULL_WAIT_S = 3.0
ACK_CHUNK = 500  # ack ids per modify_ack_deadline request (and messages per pull)


@dataclass(frozen=True)
class DeadLetter:
    """One pulled dead letter: the lease on it (`ack_id`) and the message as it was dead-lettered."""

    ack_id: str
    message_id: str
    data: bytes
    attributes: dict[str, str]
    publish_time: dt.datetime | None


class DeadLetterSubscription:
    """The dead-letter pull subscription of one source topic, open for a `with` block."""

    def __init__(self, clients: Clients, source: str):
        self._sub = pubsub_v1.SubscriberClient()
        self.path = self._sub.subscription_path(clients.settings.project,
                                                clients.topology.topic(source).dead_letter_pull_subscription)

    def __enter__(self) -> DeadLetterSubscription:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._sub.close()

    def pull_all(self, max_messages: int = MAX_SCAN, wait_s: float = PULL_WAIT_S) -> list[DeadLetter]:
        """Pull until the subscription answers empty or lets the wait pass (or `max_messages`); the
        caller acknowledges or releases every one."""
        out: list[DeadLetter] = []
        while len(out) < max_messages:
            try:
                resp = self._sub.pull(subscription=self.path, max_messages=min(ACK_CHUNK, max_messages - len(out)),
                                      timeout=wait_s)
            except gexc.DeadlineExceeded:
                break  # nothing became available within the wait: the subscription has nothing more for us
            if not resp.received_messages:
                break
            out.extend(DeadLetter(r.ack_id, r.message.message_id, r.message.data, dict(r.message.attributes),
                                  r.message.publish_time) for r in resp.received_messages)
        return out

    def acknowledge(self, ack_ids: list[str]) -> None:
        """Remove dead letters for good: only once what replaces them is durable."""
        self._sub.acknowledge(subscription=self.path, ack_ids=ack_ids)

    def release(self, ack_ids: list[str]) -> None:
        """Give pulled dead letters back at once (ack deadline 0), for the next reader."""
        for i in range(0, len(ack_ids), ACK_CHUNK):
            self._sub.modify_ack_deadline(subscription=self.path, ack_ids=ack_ids[i:i + ACK_CHUNK],
                                          ack_deadline_seconds=0)
