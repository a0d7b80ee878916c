"""Maps handler outcomes to HTTP answers, the contract Pub/Sub push and Cloud Scheduler act on.

2xx only when the handler returned, i.e. after its writes were durable. Anything raised becomes a
non-2xx, so Pub/Sub redelivers and finally dead-letters (F1); nothing is swallowed. Bad input is a 4xx
with the reason in the body; retrying it dead-letters it where it stays visible.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable

from batchline.faults import FaultInjected
from batchline.freshness import StaleInputs
from batchline.logs import log_event
from batchline.messages import InvalidMessage
from batchline.state import BatchConflict, UnknownItem

Response = tuple[str, int, dict[str, str]]
_JSON = {"Content-Type": "application/json"}


def respond(body: dict, status: int) -> Response:
    return json.dumps(body, default=str), status, _JSON


def log_context(body: bytes) -> dict[str, str]:
    """batch_id and item of a push delivery, from the attributes we publish with, so every failure
    line names what failed (F8). Best effort and never raising: it runs on the failure path."""
    try:
        attrs = json.loads(body)["message"]["attributes"]
        return {"batch_id": str(attrs.get("batch_id"))[:64] if attrs.get("batch_id") else None,
                "item": str(attrs.get("item_id"))[:64] if attrs.get("item_id") else None}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def run(handler_name: str, fn: Callable[[], dict], body: bytes = b"") -> Response:
    """Run one handler; translate its exception, if any, into the status that makes the caller retry
    (5xx), give up with a reason (4xx) or move on (2xx). `body` only labels the failure lines."""
    try:
        return respond({"ok": True, **fn()}, 200)
    except InvalidMessage as exc:
        log_event("request_rejected", severity="ERROR", handler=handler_name, error=str(exc), **log_context(body))
        return respond({"ok": False, "error": str(exc)}, 400)
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
                  error_type=type(exc).__name__, traceback=traceback.format_exc(limit=8), **log_context(body))
        return respond({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, 500)
