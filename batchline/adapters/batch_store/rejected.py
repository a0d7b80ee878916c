"""Dead-lettered messages no item could be found for, kept where an operator sees them."""

from __future__ import annotations

from batchline.adapters.batch_store.documents import Documents, now
from batchline.domain import ids
from batchline.layout import REJECTED


class RejectedMessages(Documents):
    def record_rejected(
        self,
        message_id: str,
        subscription: str,
        data: bytes,
        reason: str,
        *,
        source: str | None = None,
        body: bytes | None = None,
        body_bytes: int | None = None,
    ) -> str:
        """Keep a dead-lettered message that names no known item, where an operator sees it: `data` is
        its (base64) message data. A delivery that could not even be parsed as a push envelope has no
        data; then `body` keeps a bounded prefix of the raw push body and `body_bytes` its full size.
        Idempotent per message id (a redelivery overwrites the same document). Returns the doc id."""
        # the id is hashed: a message id is untrusted text, and "/" would address another document
        doc_id = ids.hashed_doc_id(message_id, ids.MESSAGE_DOC_ID_HEX)

        def text(value: str, n: int) -> str:  # untrusted JSON text may hold lone surrogates: not UTF-8
            return value[:n].encode("utf-8", "backslashreplace").decode("utf-8")

        doc = {
            "message_id": text(message_id, 256),
            "subscription": text(subscription, 512),
            "data": data[: 64 * 1024],
            "reason": text(reason, 2000),
            "source": source,
            "received_at": now(),
        }
        if body is not None:  # a Firestore document holds 1 MiB; 64 KiB of the body is plenty to read
            doc.update(body=body[: 64 * 1024], body_bytes=len(body) if body_bytes is None else body_bytes)
        self.fs.collection(REJECTED).document(doc_id).set(doc)
        return doc_id
