"""Error Reporting groups a JSON log line only if its stack is under `stack_trace` (or `exception`,
or inside `message`): https://cloud.google.com/error-reporting/docs/formatting-error-messages.
A line with the stack under any other key is a log line, never an error event."""

from __future__ import annotations

import json
import re
from pathlib import Path

from batchline import http

ROOT = Path(__file__).resolve().parents[2]


def _boom() -> dict:
    raise RuntimeError("disk on fire")


def test_handler_failure_line_carries_stack_trace(capsys):
    _, status, _ = http.run("test_handler", _boom)
    assert status == 500
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    failed = [x for x in lines if x["event"] == "handler_failed"]
    assert len(failed) == 1
    line = failed[0]
    assert line["severity"] == "ERROR"
    assert line["stack_trace"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: disk on fire" in line["stack_trace"]
    assert "traceback" not in line


def test_no_log_line_puts_a_stack_under_another_key():
    """A stack formatted into a log_event keyword other than stack_trace/exception is invisible to
    Error Reporting."""
    offenders = []
    for path in (ROOT / "batchline").rglob("*.py"):
        for m in re.finditer(r"(\w+)=traceback\.format_exc", path.read_text()):
            if m.group(1) not in ("stack_trace", "exception"):
                offenders.append(f"{path.relative_to(ROOT)}: {m.group(1)}=")
    assert not offenders, offenders
