"""The HTTP contract Pub/Sub and Cloud Scheduler act on: 2xx only for a handler that returned,
4xx for input that retrying cannot fix, 5xx for anything that may pass, and every failure logged
with the batch and item it concerns."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchline.domain.errors import BatchConflict, FaultInjected, InvalidMessage, UnknownItem
from batchline.http import log_context, run

BODY = json.dumps({"message": {"data": base64.b64encode(b"{}").decode(), "messageId": "1",
                               "attributes": {"batch_id": "20300101_abcdefabcdef", "item_id": "player_0001"}},
                   "subscription": "s"}).encode()


def _raise(exc: Exception):
    def fn() -> dict:
        raise exc
    return fn


@pytest.mark.parametrize(("exc", "status"), [
    (InvalidMessage("bad"), 400),
    (UnknownItem("who"), 404),
    (BatchConflict("20300101_abcdefabcdef", "running"), 409),
    (FaultInjected("boom"), 503),
    (RuntimeError("bigquery down"), 500),
    (ValueError("Failed to commit transaction in 5 attempts."), 500),
])
def test_every_failure_is_non_2xx_and_logged_with_its_batch_and_item(exc, status, capsys):
    body, code, headers = run("h", _raise(exc), BODY)
    assert code == status and headers["Content-Type"] == "application/json"
    assert json.loads(body)["ok"] is False
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1 and lines[0]["severity"] in ("ERROR", "WARNING")
    if status != 409:  # a conflict names the batch it conflicts with instead
        assert (lines[0]["batch_id"], lines[0]["item"]) == ("20300101_abcdefabcdef", "player_0001")


def test_a_conflict_names_the_running_batch():
    body, code, _ = run("start", _raise(BatchConflict("20300101_abcdefabcdef", "consolidating")))
    assert code == 409 and json.loads(body)["batch_id"] == "20300101_abcdefabcdef"


def test_success_is_200_with_the_handler_result(capsys):
    body, code, _ = run("h", lambda: {"result": "recorded"}, BODY)
    assert code == 200 and json.loads(body) == {"ok": True, "result": "recorded"}
    assert capsys.readouterr().out == "", "success writes no failure line"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_log_context_never_raises_on_garbage(body):
    ctx = log_context(body)
    assert set(ctx) <= {"batch_id", "item"}


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(st.sampled_from(["message", "attributes", "batch_id", "item_id", "x"]),
                                       children, max_size=4),
                     max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_log_context_never_raises_on_any_json_shape(value):
    ctx = log_context(json.dumps(value).encode())
    assert set(ctx) <= {"batch_id", "item"}
    assert all(v is None or (isinstance(v, str) and len(v) <= 64) for v in ctx.values())


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"message": ' * 3000 + b"1" + b"}" * 3000])
def test_deep_nesting_is_a_400_with_one_line_not_an_escaped_recursion_error(body, capsys):
    assert log_context(body) == {}
    _, code, _ = run("h", _raise(RecursionError("maximum recursion depth exceeded")), body)
    assert code == 400
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["event"] == "request_rejected" and "nested too deeply" in line["error"]
