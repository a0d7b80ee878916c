"""Hostile input over real HTTP against the real functions (gunicorn) and emulators.

Each route is fuzzed with hypothesis; every case must get its one right answer (4xx, or 200 "rejected"
with a rejected_messages record on a dead-letter route), log one structured line, write nothing else,
and leave every process answering. Targeted tests pin the cases issue 6 found. Run with -s to see the
number of cases tried per route and status.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
from urllib.parse import quote

import pytest
import requests
from hostile import BAD_DATES, INJECTIONS, TALLY, json_bodies, push_bodies, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchline.adapters import staging
from batchline.domain import ids
from batchline.domain.messages import WorkMessage, encode
from batchline.domain.runs import Item
from batchline.layout import REJECTED
from batchline.local import stack as local_stack

CASES = settings(max_examples=30, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
# route (= the handler name on its lines) -> (function, path, hostile bodies)
LIVE = {
    "worker": ("worker", "/", push_bodies("work")),
    "completions": ("coordinator", "/completions", push_bodies("completion")),
    "consolidate": ("coordinator", "/consolidate", push_bodies("consolidation")),
    "start": ("coordinator", "/start", json_bodies("start")),
    "stall_check": ("coordinator", "/stall-check", json_bodies("stall")),
    "reconcile": ("reconcile", "/", json_bodies("reconcile")),
}
DEAD = {"work": push_bodies("work"), "completions": push_bodies("completion"),
        "consolidation": push_bodies("consolidation")}
REFUSED = ("request_rejected", "request_unknown_item")


def _post(stack, function: str, path: str, body: bytes) -> requests.Response:
    return requests.post(stack.url(function) + path, data=body, timeout=60,
                         headers={"Content-Type": "application/json"})


def _count(stack, function: str, events: tuple[str, ...], handler: str | None = None) -> int:
    return sum(1 for r in stack.log_lines(function)
               if r.get("event") in events and (handler is None or r.get("handler") == handler))


def _healthy(stack) -> None:
    status = local_stack.status(stack.info.state_dir)
    assert status and all(s["alive"] and s["answering"] for s in status.values()), status


@pytest.mark.parametrize("route", sorted(LIVE))
def test_fuzzed_bodies_are_refused_with_a_line_and_write_nothing(stack, route):
    function, path, bodies = LIVE[route]
    before, lines = snapshot(stack), _count(stack, function, REFUSED, route)
    answered: list[int] = []

    @CASES
    @given(body=bodies)
    def case(body):
        resp = _post(stack, function, path, body)
        TALLY[(route, resp.status_code)] += 1
        answered.append(resp.status_code)
        assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:500], body[:300])
        assert resp.json()["ok"] is False

    case()
    assert snapshot(stack) == before, "a refused request wrote something"
    assert _count(stack, function, REFUSED, route) - lines == len(answered), "one structured line per refusal"
    _healthy(stack)


@pytest.mark.parametrize("source", sorted(DEAD))
def test_fuzzed_dead_letters_are_recorded_logged_and_acked(stack, source):
    before, lines = snapshot(stack, with_rejected=False), _count(stack, "coordinator", ("message_rejected",))
    rejected_before = snapshot(stack)[REJECTED]
    answered = []

    @CASES
    @given(body=DEAD[source])
    def case(body):
        resp = _post(stack, "coordinator", f"/dead-letters/{source}", body)
        TALLY[(f"dead-letters/{source}", resp.status_code)] += 1
        answered.append(resp.status_code)
        assert resp.status_code == 200 and resp.json()["result"] == "rejected", (resp.text[:500], body[:300])

    case()
    assert snapshot(stack, with_rejected=False) == before, "only rejected_messages may change"
    rejected = snapshot(stack)[REJECTED]  # written or rewritten (a redelivered id rewrites its doc)
    assert len(rejected) >= len(rejected_before) and rejected != rejected_before
    assert _count(stack, "coordinator", ("message_rejected",)) - lines == len(answered)
    _healthy(stack)


@CASES
@given(source=st.sampled_from(INJECTIONS) | st.text(min_size=1, max_size=30),
       body=push_bodies("work") | st.just(b'{"message": {"data": "e30=", "messageId": "m"}, "subscription": "s"}'))
def test_fuzzed_dead_letter_sources_are_recorded_and_acked(stack, source, body):
    """An unknown /dead-letters/<source> (injection, NUL, "..", unicode) is recorded like any other
    unparseable dead letter, never a 4xx that loops (a known source with a bad body is rejected too)."""
    resp = _post(stack, "coordinator", "/dead-letters/" + quote(source, safe=""), body)
    TALLY[("dead-letters/<hostile>", resp.status_code)] += 1
    assert resp.status_code == 200 and resp.json()["result"] == "rejected", (source, resp.text[:300])


# -- targeted ---------------------------------------------------------------------------------------
ROUTES = [(f, p) for f, p, _ in LIVE.values()]
TEN_MB = b'{"message": {"data": "' + b"A" * (10 * 1024 * 1024) + b'", "messageId": "ten-mb"}, "subscription": "s"}'
DEEP_5000 = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize("body", [TEN_MB, DEEP_5000, b"\x00" * 64, '{"\u00e9\U0001f600": "\\u0000"}'.encode()],
                         ids=["10MB", "5000-deep", "NUL", "unicode"])
def test_targeted_bodies_on_every_route(stack, body):
    before = snapshot(stack, with_rejected=False)
    for function, path in ROUTES:
        resp = _post(stack, function, path, body)
        TALLY[("targeted", resp.status_code)] += 1
        assert resp.status_code == 400, (path, resp.text[:300])
    resp = _post(stack, "coordinator", "/dead-letters/work", body)
    TALLY[("targeted", resp.status_code)] += 1
    assert resp.status_code == 200 and resp.json()["result"] == "rejected"
    doc = stack.clients.fs.collection(REJECTED).document(resp.json()["rejected_doc"]).get().to_dict()
    assert doc["body_bytes"] == len(body) and doc["body"] == body[:64 * 1024] and doc["data"] == b""
    assert snapshot(stack, with_rejected=False) == before
    _healthy(stack)


@pytest.mark.parametrize("data", [DEEP_5000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"\x00{}", b"{}\x00"])
def test_hostile_message_data_inside_a_valid_envelope(stack, data):
    for route in ("worker/", "coordinator/completions", "coordinator/consolidate"):
        resp = stack.push(route, data)
        TALLY[("targeted", resp.status_code)] += 1
        assert resp.status_code == 400 and "message data" in resp.json()["error"], (route, resp.text[:300])
    resp = stack.push("coordinator/dead-letters/completions", data, message_id=f"deep-{len(data)}-{data[:2]!r}")
    TALLY[("targeted", resp.status_code)] += 1
    assert resp.status_code == 200 and resp.json()["result"] == "rejected"


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("field", ["batch_id", "item_id", "staging_table"])
def test_injection_strings_in_ids_and_table_names_are_refused(stack, field, value):
    completion = {"v": 1, "batch_id": "20300101_0123456789ab", "item_id": "p1", "row_count": 1,
                  "staging_table": "stg_20300101_0123456789ab__p1", "write_status": "ok", "attempt": 1, field: value}
    resp = stack.push("coordinator/completions", json.dumps(completion).encode("utf-8", "surrogatepass"))
    TALLY[("targeted", resp.status_code)] += 1
    assert resp.status_code == 400, resp.text


@pytest.mark.parametrize("day", BAD_DATES)
def test_impossible_and_non_iso_dates_are_refused(stack, day):
    for function, path, key in [("coordinator", "/start", "game_date"), ("reconcile", "/", "game_date")]:
        resp = _post(stack, function, path, json.dumps({key: day}).encode())
        TALLY[("targeted", resp.status_code)] += 1
        assert resp.status_code == 400 and "game_date" in resp.json()["error"], resp.text
    work = {"batch_id": "20300101_0123456789ab", "game_date": day, "item_id": "p1", "game_id": "g1"}
    resp = stack.push("worker/", work)
    TALLY[("targeted", resp.status_code)] += 1
    assert resp.status_code == 400 and "game_date" in resp.json()["error"]


OURS, GUNICORN = "ours", "gunicorn"
TRANSPORT = [  # (headers, body, who answers)
    *[(b"Transfer-Encoding: chunked\r\n", body, OURS) for body in (
        b"ZZ\r\nabc\r\n0\r\n\r\n", b"3\r\nabcXX0\r\n\r\n", b"-1\r\nab\r\n0\r\n\r\n", b"ffff\r\nabc",
        b"fffffffffffffffffffff\r\nabc")],
    (b"Transfer-Encoding: gzip, chunked\r\n", b"5\r\n\x1f\x8b\x08\x00\x00\r\n0\r\n\r\n", OURS),
    (b"Content-Length: 1000\r\n", b'{"message": ', OURS),  # the client hangs up early
    (b"Content-Length: -1\r\n", b"{}", GUNICORN),
    (b"Content-Length: abc\r\n", b"{}", GUNICORN),
    (b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n", GUNICORN),
]


@pytest.mark.parametrize(("head", "body", "who"), TRANSPORT)
def test_malformed_framing_is_a_400_never_a_500(stack, head, body, who):
    """gunicorn decodes a chunked or length-delimited body lazily, so a broken one surfaces while our
    handler reads it: the answer is our 400 with a request_rejected line. Framing *headers* it cannot
    parse gunicorn refuses itself with a plain 400 before our code runs (its own error log, no JSON
    line): acceptable, a 4xx with nothing written. Either way the worker keeps answering."""
    lines = _count(stack, "worker", REFUSED, "worker")
    port = int(stack.url("worker").rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     + head + b"\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    TALLY[("targeted", int(answer.split(b" ", 2)[1]))] += 1
    assert answer.startswith(b"HTTP/1.1 400"), answer[:400]
    ours = b'{"ok": false' in answer
    assert ours == (who == OURS), answer[:400]
    assert _count(stack, "worker", REFUSED, "worker") == lines + (1 if ours else 0)
    _healthy(stack)


@pytest.mark.parametrize("message_id", ["\ud800", "a\x00b", "\U0001d54f/../x"])
@pytest.mark.parametrize("body", [b"not json", b'{"garbage": 1}'])
def test_a_dead_letter_with_an_unencodable_message_id_is_recorded(stack, message_id, body):
    """A lone surrogate is valid JSON but not UTF-8, which Firestore refuses: it must not make the
    record fail (a 5xx on a dead-letter route loops). Both the envelope path and the handler's."""
    resp = stack.push("coordinator/dead-letters/work", body, message_id=message_id)
    TALLY[("targeted", resp.status_code)] += 1
    assert resp.status_code == 200 and resp.json()["result"] == "rejected", resp.text
    doc_id = hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    doc = stack.clients.fs.collection(REJECTED).document(doc_id).get().to_dict()
    assert doc["message_id"] == message_id.encode("utf-8", "backslashreplace").decode()


def _publish_dead_letter(stack, source: str, data: bytes) -> str:
    c = stack.clients
    topic = c.publisher.topic_path(c.settings.project, c.topology.topic(source).dead_letter_topic)
    return c.publisher.publish(topic, data).result(timeout=60)


@pytest.mark.parametrize("size", [48 * 1024, 100 * 1024])
def test_a_large_message_on_a_dead_letter_subscription_is_recorded_once_not_looped(stack, size):
    """Issue 6.6: a real push from the work dead-letter topic, 48 KB (a ~65 KB push body, refused before the
    fix) and 100 KB (over the push-body limit): one rejected_messages doc, one line, acked for good."""
    message_id = _publish_dead_letter(stack, "work", b'{"pad": "' + b"x" * size + b'"}')

    def lines() -> list[dict]:
        return [r for r in stack.log_lines("coordinator") if r.get("message_id") == message_id]

    deadline = time.monotonic() + 60
    while not lines() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [r["event"] for r in lines()] == ["message_rejected"], "the dead letter was not recorded"
    doc_id = hashlib.sha256(message_id.encode()).hexdigest()[:40]
    doc = stack.clients.fs.collection(REJECTED).document(doc_id).get().to_dict()
    assert doc and doc["message_id"] == message_id and doc["source"] in ("work", None)
    time.sleep(6)  # the local stack retries with no backoff: a looping delivery would have come back by now
    assert len(lines()) == 1, f"delivered {len(lines())} times"
    TALLY[("targeted", 200)] += 1


def test_delivery_attempt_5000_is_refused_before_any_staging_write(stack, day):
    """The worker used to write its staged rows, then fail validating its own completion (attempt
    le=1000) and loop on 500. A control delivery with deliveryAttempt 3 shows the write would happen."""
    store = stack.store
    batch_id = ids.new_batch_id(day)
    store.create_batch(batch_id, day, [Item("player_0001", "g1")], force=False, faults=None,
                       dispatch_token="test")
    staging.create_batch_table(stack.clients.bq, stack.clients.settings, batch_id)  # as its dispatch does
    store.mark_running(batch_id, "test")
    work = encode(WorkMessage(batch_id=batch_id, game_date=day, item_id="player_0001", game_id="g1"))

    def deliver(attempt: int) -> requests.Response:
        body = {"message": {"data": base64.b64encode(work).decode(), "messageId": f"da-{attempt}"},
                "subscription": "projects/batchline-test/subscriptions/manual", "deliveryAttempt": attempt}
        return requests.post(stack.url("worker") + "/", json=body, timeout=60)

    def staged() -> set[str]:
        return set(staging.staged_writes(stack.clients.bq, stack.clients.settings, batch_id))

    resp = deliver(5000)
    TALLY[("targeted", resp.status_code)] += 1
    assert resp.status_code == 400 and "deliveryAttempt" in resp.json()["error"]
    assert staged() == set() and store.get_item(batch_id, "player_0001")["status"] == "pending"
    assert deliver(3).status_code == 200, "the control delivery writes its rows"
    batch = stack.wait(batch_id)  # its completion consolidates the batch (and drops its staging table)
    write_id = store.get_item(batch_id, "player_0001")["write_id"]
    assert stack.merged_manifest(batch) == {"player_0001": write_id}
    assert batch["abandoned_writes"] == 0 and batch["merge_result"]["staged_rows_total"] == 5, \
        "the refused delivery staged nothing, not even later"


def test_zz_cases_tried(stack):
    """The figure for the note: cases tried per route and status (run with -s)."""
    total = sum(TALLY.values())
    print(f"\nhostile cases tried: {total}")
    for (route, status), n in sorted(TALLY.items(), key=str):
        print(f"  {route:28} {status}: {n}")
    assert total > 0 and not any(status >= 500 for _, status in TALLY), "an unclassified 5xx"
