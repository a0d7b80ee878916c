"""The route contracts of the three functions, through functions-framework's own Flask app and no
emulator: hostile bodies are refused (4xx, one structured line) before any client is built, and a
dead-letter delivery that cannot be parsed is recorded and acked (durable-then-ack), never a loop."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import functions_framework
import pytest

from batchline.domain.messages import MAX_DELIVERY_ATTEMPT, MAX_PUSH_BODY_BYTES
from batchline.http import MAX_DEAD_LETTER_BODY_BYTES

ROOT = Path(__file__).resolve().parents[2]
DEEP = b"[" * 5000 + b"]" * 5000
TEN_MB = b'{"game_date": "' + b"x" * (10 * 1024 * 1024) + b'"}'


def _app(target: str):
    app = functions_framework.create_app(target, str(ROOT / "functions" / target / "main.py"))
    return app.test_client(), sys.modules["main"]


@pytest.fixture
def no_clients(monkeypatch):
    """Loads a function whose clients fail the test if anything builds them."""
    def load(target: str):
        client, module = _app(target)

        def forbidden():
            raise AssertionError("a client was built for a request that should have been refused")
        monkeypatch.setattr(module, "default_clients", forbidden)
        return client, module
    return load


ROUTES = [("worker", "/"), ("coordinator", "/start"), ("coordinator", "/completions"),
          ("coordinator", "/consolidate"), ("coordinator", "/stall-check"), ("reconcile", "/")]


def _lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def envelope(data: bytes, **extra) -> bytes:
    return json.dumps({"message": {"data": base64.b64encode(data).decode(), "messageId": "m-1", "attributes": {}},
                       "subscription": "projects/p/subscriptions/s", **extra}).encode()


@pytest.mark.parametrize(("target", "path"), ROUTES)
@pytest.mark.parametrize("body", [TEN_MB, DEEP, b"\x00" * 100, b'{"\\ud800": 1}', b"\xff\xfe"],
                         ids=["10MB", "5000-deep", "NUL", "lone-surrogate", "bad-utf8"])
def test_a_hostile_body_is_a_4xx_with_one_line_and_no_client(no_clients, capsys, target, path, body):
    client, _ = no_clients(target)
    resp = client.post(path, data=body, content_type="application/json")
    assert resp.status_code == 400, resp.get_data()
    assert resp.get_json()["ok"] is False
    lines = _lines(capsys)
    assert [(r["event"], r["severity"]) for r in lines] == [("request_rejected", "ERROR")]


def test_a_push_body_over_the_limit_is_refused_without_reading_it_all(no_clients, capsys):
    client, _ = no_clients("worker")
    resp = client.post("/", data=b" " * (MAX_PUSH_BODY_BYTES + 1))
    assert resp.status_code == 400 and "limit is" in resp.get_json()["error"]


def test_delivery_attempt_5000_is_refused_before_the_worker_touches_anything(no_clients, capsys):
    client, _ = no_clients("worker")
    body = envelope(b'{"v": 1}', deliveryAttempt=5000)
    resp = client.post("/", data=body, content_type="application/json")
    assert resp.status_code == 400 and "deliveryAttempt" in resp.get_json()["error"]
    ok = envelope(b'{"v": 1}', deliveryAttempt=MAX_DELIVERY_ATTEMPT)
    resp = client.post("/", data=ok, content_type="application/json")  # within bounds it reaches the handler
    assert resp.status_code == 500 and "client was built" in resp.get_json()["error"]


@pytest.mark.parametrize("day", ["1767225600", "1767225600.0", '"2026-01-15T00:00:00"', '"2025-02-30"', '""'])
@pytest.mark.parametrize(("target", "path"), [("coordinator", "/start"), ("reconcile", "/")])
def test_only_iso_dates_reach_the_handlers(no_clients, capsys, target, path, day):
    client, _ = no_clients(target)
    resp = client.post(path, data=b'{"game_date": ' + day.encode() + b"}", content_type="application/json")
    assert resp.status_code == 400 and "game_date" in resp.get_json()["error"]


# -- dead letters: record, log, ack ---------------------------------------------------------------
class FakeStore:
    calls: list[dict] = []
    fail = False

    def record_rejected(self, **kw) -> str:
        if FakeStore.fail:
            raise RuntimeError("firestore unavailable")
        FakeStore.calls.append(kw)
        return "doc-" + str(len(FakeStore.calls))


@pytest.fixture
def dead_letters(monkeypatch):
    client, module = _app("coordinator")
    FakeStore.calls, FakeStore.fail = [], False
    monkeypatch.setattr(module, "default_clients", lambda: type("C", (), {"batches": FakeStore()})())
    monkeypatch.setattr(module, "handle_dead_letter",
                        lambda *a: pytest.fail("an unparseable dead letter reached the handler"))
    return client


@pytest.mark.parametrize(("path", "body", "why"), [
    ("/dead-letters/work", envelope(b"x" * MAX_PUSH_BODY_BYTES), "limit is"),
    ("/dead-letters/work", b"x" * (MAX_DEAD_LETTER_BODY_BYTES + 10), "limit is"),
    ("/dead-letters/completions", DEEP, "RecursionError"),
    ("/dead-letters/work", b"not json", "not usable JSON"),
    ("/dead-letters/consolidation", b'{"message": {"data": 5, "messageId": "m-2"}, "subscription": "s"}',
     "not a Pub/Sub push envelope"),
    ("/dead-letters/nope", envelope(b"{}"), "unknown dead-letter source"),
    ("/dead-letters/work", envelope(b"{}", deliveryAttempt=5000), "deliveryAttempt"),
])
def test_an_unparseable_dead_letter_is_recorded_logged_and_acked(dead_letters, capsys, path, body, why):
    resp = dead_letters.post(path, data=body, content_type="application/json")
    assert resp.status_code == 200, resp.get_data()
    assert resp.get_json()["result"] == "rejected"
    [call] = FakeStore.calls
    assert why in call["reason"] and call["body"] == body[:len(call["body"])] and call["body"]
    assert call["body_bytes"] in (len(body), None) and call["source"] == path.rsplit("/", 1)[1]
    [line] = _lines(capsys)
    assert (line["event"], line["severity"], line["rejected_doc"]) == ("message_rejected", "ERROR", "doc-1")


def test_a_dead_letter_names_its_message_id_when_it_can(dead_letters, capsys):
    dead_letters.post("/dead-letters/work", data=envelope(b"y" * MAX_PUSH_BODY_BYTES))
    assert FakeStore.calls[0]["message_id"] == "m-1"  # redeliveries share one rejected_messages doc
    dead_letters.post("/dead-letters/work", data=b"garbage")
    assert FakeStore.calls[1]["message_id"].startswith("body-sha256:")


def test_a_dead_letter_that_cannot_be_recorded_is_a_5xx(dead_letters, capsys):
    FakeStore.fail = True
    resp = dead_letters.post("/dead-letters/work", data=b"not json")
    assert resp.status_code == 500
    assert [r["event"] for r in _lines(capsys)] == ["handler_failed"]


def test_a_dead_letter_its_handler_cannot_place_is_recorded_under_its_message_id(dead_letters, monkeypatch,
                                                                                 capsys):
    """Whatever the handler refuses (InvalidMessage, UnknownItem) is recorded and acked here too, so a
    change inside handle_dead_letter cannot turn a refusal into an endless redelivery."""
    from batchline.domain.errors import InvalidMessage, UnknownItem
    client_module = sys.modules["main"]
    for exc in (UnknownItem("batch b has no item i"), InvalidMessage("bad completion")):
        monkeypatch.setattr(client_module, "handle_dead_letter", lambda *a, e=exc: (_ for _ in ()).throw(e))
        resp = dead_letters.post("/dead-letters/completions", data=envelope(b"{}"))
        assert resp.status_code == 200 and resp.get_json()["result"] == "rejected"
    assert [c["message_id"] for c in FakeStore.calls] == ["m-1", "m-1"]
    assert [r["event"] for r in _lines(capsys)] == ["message_rejected", "message_rejected"]


def test_the_worker_answers_a_get_with_405_and_no_line(no_clients, capsys):
    client, _ = no_clients("worker")
    assert client.get("/").status_code == 405
    assert _lines(capsys) == []


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
                                          "text/plain", None])
def test_the_content_type_does_not_change_the_answer(no_clients, capsys, content_type):
    """No form parsing (and so no werkzeug 413 without a line) whatever the request claims to be."""
    client, _ = no_clients("coordinator")
    body = b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n" + b"v" * (2 * 1024 * 1024) + b"\r\n--x--\r\n"
    resp = client.post("/completions", data=body, content_type=content_type)
    assert resp.status_code == 400 and "limit is" in resp.get_json()["error"]
    assert [r["event"] for r in _lines(capsys)] == ["request_rejected"]


@pytest.mark.parametrize("path", ["/dead-letters", "/dead-letters/", "/dead-letters/%2F..%2Fx", "/dead-letters/a%00"])
def test_any_path_under_dead_letters_records_rather_than_404s(dead_letters, capsys, path):
    resp = dead_letters.post(path, data=envelope(b"{}"))
    assert resp.status_code == 200 and resp.get_json()["result"] == "rejected"
    assert "unknown dead-letter source" in FakeStore.calls[0]["reason"]
