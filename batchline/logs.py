"""Structured JSON logs on stdout, one line per state transition (F8).

Cloud Logging parses a JSON line on stdout of a Cloud Function into `jsonPayload` and takes its
`severity`; a plain `logging` logger under gunicorn was exactly what never reached it in the pipeline we
replace. So we write the line ourselves and flush it, and every line carries the batch id and item.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading

_LOCK = threading.Lock()
SEVERITIES = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")


def log_event(event: str, *, severity: str = "INFO", message: str | None = None,
              batch_id: str | None = None, item: str | None = None, **fields: object) -> dict:
    """Write one structured line and return it (tests read it back)."""
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")
    record: dict[str, object] = {
        "severity": severity,
        "message": message or event.replace("_", " "),
        "event": event,
        "batch_id": batch_id,
        "item": item,
        "time": dt.datetime.now(dt.UTC).isoformat(),
        **fields,
    }
    line = json.dumps(record, default=str, separators=(",", ":"))
    with _LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    return record
