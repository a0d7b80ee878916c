"""Maps handler outcomes to HTTP answers, the contract Pub/Sub push and Cloud Scheduler act on.

2xx only when the handler returned, i.e. after its writes were durable. Anything raised becomes a
non-2xx, so Pub/Sub redelivers and finally dead-letters (F1); nothing is swallowed. Bad input is a 4xx
with the reason in the body; retrying it dead-letters it where it stays visible.
"""

from __future__ import annotations

import hashlib
import json
import re
import traceback
from collections.abc import Callable
from typing import TypeVar

from werkzeug.exceptions import HTTPException

from batchline.domain.errors import BatchConflict, FaultInjected, InvalidMessage, StaleInputs, UnknownItem
from batchline.domain.messages import (
    MAX_MESSAGE_BYTES,
    MAX_PUSH_BODY_BYTES,
    PushEnvelope,
    parse_envelope,
    parse_json_body,
    parse_model,
)
from batchline.logs import log_event
from batchline.schedules import HEADER_JOB_NAME, HEADER_SCHEDULE_TIME, is_scheduler_call

try:  # gunicorn (functions-framework's server) decodes a chunked body lazily, while the handler reads it
    from gunicorn.http.errors import ParseException as _WireError
except ImportError:  # pragma: no cover - the Flask development server has no such errors
    _WireError = OSError

Response = tuple[str, int, dict[str, str]]
M = TypeVar("M")
# Pub/Sub messages reach 10 MB (13.4 MB base64 in a push body); a Cloud Functions request 32 MiB. A
# dead-letter body is read whole up to this, so the record can name it; beyond, its prefix is recorded.
MAX_DEAD_LETTER_BODY_BYTES = 32 * 1024 * 1024
_JSON = {"Content-Type": "application/json"}


def respond(body: dict, status: int) -> Response:
    return json.dumps(body, default=str), status, _JSON


class BodyTooLarge(InvalidMessage):
    """The body is over the route's limit; `prefix` holds its first `limit` bytes."""

    def __init__(self, limit: int, prefix: bytes, size: int | None) -> None:
        super().__init__(f"body is {'over ' + str(limit) if size is None else size} bytes; the limit is {limit}")
        self.prefix, self.size = prefix, size


def read_body(request, limit: int) -> bytes:
    """The request body, read only up to `limit` bytes (werkzeug would read it all, and answer a bare
    413 if a limit were configured). Too large -> BodyTooLarge; a malformed chunked body or a dropped
    connection -> InvalidMessage: both become a 4xx with a structured line, never an unclassified 500."""
    declared = request.content_length
    try:
        stream, chunks, got = request.stream, [], 0
        while got <= limit:
            chunk = stream.read(min(64 * 1024, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except (_WireError, OSError, ValueError, HTTPException) as exc:
        raise InvalidMessage(f"request body unreadable: {type(exc).__name__}: {str(exc)[:200]}") from exc
    body = b"".join(chunks)
    if len(body) > limit:
        raise BodyTooLarge(limit, body[:limit], declared)
    return body


def log_context(body: bytes) -> dict[str, str]:
    """batch_id and item of a push delivery, from the attributes we publish with, so every failure
    line names what failed (F8). Best effort and never raising: it runs on the failure path."""
    if len(body) > MAX_PUSH_BODY_BYTES:
        return {}
    try:
        attrs = json.loads(body)["message"]["attributes"]
        return {"batch_id": str(attrs.get("batch_id"))[:64] if attrs.get("batch_id") else None,
                "item": str(attrs.get("item_id"))[:64] if attrs.get("item_id") else None}
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return {}


def run(handler_name: str, fn: Callable[[], dict], body: bytes = b"") -> Response:
    """Run one handler; translate its exception, if any, into the status that makes the caller retry
    (5xx), give up with a reason (4xx) or move on (2xx). `body` only labels the failure lines."""
    try:
        return respond({"ok": True, **fn()}, 200)
    except (InvalidMessage, RecursionError) as exc:  # RecursionError: absurdly nested input, never retried
        error = str(exc) if isinstance(exc, InvalidMessage) else f"input nested too deeply: {exc}"
        log_event("request_rejected", severity="ERROR", handler=handler_name, error=error, **log_context(body))
        return respond({"ok": False, "error": error}, 400)
    except UnknownItem as exc:
        log_event("request_unknown_item", severity="ERROR", handler=handler_name, error=str(exc),
                  **log_context(body))
        return respond({"ok": False, "error": str(exc)}, 404)
    except BatchConflict as exc:
        log_event("start_conflict", severity="WARNING", handler=handler_name, batch_id=exc.batch_id,
                  batch_status=exc.status)
        return respond({"ok": False, "error": str(exc), "batch_id": exc.batch_id, "status": exc.status}, 409)
    except StaleInputs as exc:
        log_event("start_refused_stale_inputs", severity="ERROR", handler=handler_name, error=str(exc),
                  game_date=exc.game_date, newest_loaded_at=exc.newest_loaded_at,
                  max_age_hours=exc.max_age_hours, context_rows=exc.rows)
        return respond({"ok": False, "error": str(exc), "game_date": exc.game_date,
                        "newest_loaded_at": exc.newest_loaded_at, "max_age_hours": exc.max_age_hours}, 424)
    except FaultInjected as exc:
        log_event("fault_injected", severity="WARNING", handler=handler_name, error=str(exc), **log_context(body))
        return respond({"ok": False, "error": str(exc)}, 503)
    except Exception as exc:  # noqa: BLE001 - answered 500 so the caller retries; never swallowed
        log_event("handler_failed", severity="ERROR", handler=handler_name, error=str(exc),
                  error_type=type(exc).__name__, stack_trace=traceback.format_exc(limit=8), **log_context(body))
        return respond({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, 500)


def refused_for_scheduler(status: int) -> bool:
    """Whether an answer is a refusal the scheduler must not retry. Cloud Scheduler retries every
    non-2xx (docs/scheduler.md), but a 4xx says the same request can never succeed: a start of a date
    whose batch is still active (409), a start on stale inputs (424) or with no context rows yet
    (400: a retry minutes later could start on half-loaded rows), a malformed body. A 5xx is a
    failure worth retrying, and so are 408 and 429 (a timeout, a full instance), should they ever be ours."""
    return 400 <= status < 500 and status not in (408, 429)


def for_scheduler(handler_name: str, response: Response, headers) -> Response:
    """A scheduler's call answered with a refusal gets a 2xx that says so (`refused`, the status it
    would have had), and an ERROR line `scheduled_call_refused` (alerted on) naming the job: the
    refusal stays loud, and is not repeated by the scheduler's retries. Other callers keep the 4xx."""
    body, status, _ = response
    if not refused_for_scheduler(status):
        return response
    payload = json.loads(body)
    log_event("scheduled_call_refused", severity="ERROR", handler=handler_name, refused_status=status,
              error=str(payload.get("error"))[:1000], scheduler_job=str(headers.get(HEADER_JOB_NAME, ""))[:200],
              schedule_time=str(headers.get(HEADER_SCHEDULE_TIME, ""))[:64],
              message="a scheduled call was refused; answered 2xx so the scheduler does not retry it")
    return respond({**payload, "refused": True, "refused_status": status}, 200)


# -- routes: read and validate everything before the handler (and its clients) runs ---------------
def run_json(handler_name: str, request, model: type[M], fn: Callable[[M], dict]) -> Response:
    """A scheduler/operator JSON route: body read up to MAX_MESSAGE_BYTES and validated into `model`.
    A scheduler's call that is refused is answered 2xx (`for_scheduler`)."""
    response = run(handler_name,
                   lambda: fn(parse_model(model, parse_json_body(read_body(request, MAX_MESSAGE_BYTES)))))
    return for_scheduler(handler_name, response, request.headers) if is_scheduler_call(request.headers) else response


def run_push(handler_name: str, request, fn: Callable[[PushEnvelope], dict]) -> Response:
    """A live Pub/Sub push route. A body that can never be a message of ours is a 4xx: Pub/Sub retries,
    then dead-letters it, and the dead-letter route records it."""
    try:
        body = read_body(request, MAX_PUSH_BODY_BYTES)
    except InvalidMessage as exc:
        return run(handler_name, _raising(exc))
    return run(handler_name, lambda: fn(parse_envelope(body)), body)


def run_dead_letter(source: str, request, sources: tuple[str, ...], record: Callable[..., str],
                    fn: Callable[[PushEnvelope], dict]) -> Response:
    """A dead-letter push route. Nothing redelivers from here to anywhere else, so a non-2xx would loop
    forever: a delivery that cannot be parsed or handled (oversized, bad JSON or base64, unknown source,
    unknown item) is recorded durably by `record` (rejected_messages/{hash}), logged as an ERROR
    `message_rejected` line (alerted on), and only then acked. Failing to record it is a 5xx."""
    raw: bytes = b""
    size: int | None = None

    def handle() -> dict:
        nonlocal raw, size
        try:
            raw = read_body(request, MAX_DEAD_LETTER_BODY_BYTES)
            size = len(raw)
            if source not in sources:
                raise InvalidMessage(f"unknown dead-letter source {source[:64]!r}")
            return fn(parse_envelope(raw))
        except BodyTooLarge as exc:
            raw, size = exc.prefix, exc.size
            return _reject(exc)
        except (InvalidMessage, UnknownItem, RecursionError) as exc:
            return _reject(exc)

    def _reject(exc: Exception) -> dict:
        message_id = _field(raw, "messageId") or _field(raw, "message_id")
        message_id = message_id or "body-sha256:" + hashlib.sha256(raw).hexdigest()
        reason = f"{type(exc).__name__}: {exc}"
        doc = record(message_id=message_id, subscription=_field(raw, "subscription") or f"(unparsed, {source[:64]})",
                     data=b"", reason=reason, source=source[:64], body=raw, body_bytes=size)
        log_event("message_rejected", severity="ERROR", handler="dead_letters", source=source[:64],
                  message_id=message_id[:128], rejected_doc=doc, body_bytes=size, error=reason[:500])
        return {"result": "rejected", "rejected_doc": doc}

    return run("dead_letters", handle)


def _raising(exc: Exception) -> Callable[[], dict]:
    def fn() -> dict:
        raise exc
    return fn


_FIELD = re.compile(rb'"(messageId|message_id|subscription)"\s*:\s*"((?:[^"\\]|\\.){1,1024})"')


def _field(raw: bytes, name: str) -> str | None:
    """A top-level-looking string field of a body that may not parse: the first `"name": "..."` found,
    JSON escapes decoded, enough to name the delivery in the record (redeliveries share the document)."""
    for m in _FIELD.finditer(raw):
        if m.group(1).decode() == name:
            try:
                return json.loads(b'"' + m.group(2) + b'"')
            except ValueError:  # bad UTF-8 or a broken escape: keep the text as it is
                return m.group(2).decode("utf-8", "replace")
    return None
