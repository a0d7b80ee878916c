"""batchline/adapters/write_stream.py against an in-memory AppendRows call (append_double.py): every caller gets
its own request's response, an ended connection fails exactly the callers still waiting, the next
append opens a new connection, the writer schema goes out only when the (table, schema) changes, and
the reuse decision is pure. The real emulator: tests/stack/test_write_stream.py."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from append_double import FakeOpener, ok
from google.cloud.bigquery_storage_v1 import types
from hypothesis import given
from hypothesis import strategies as st

from batchline.adapters.write_stream import ConnectionLost, NoAnswer, SharedAppendStream, reuse_decision

STREAM = "projects/p/datasets/d/tables/{}/streams/_default"
SCHEMA = types.ProtoSchema()


def request(tag: str, table: str = "t") -> types.AppendRowsRequest:
    return types.AppendRowsRequest(write_stream=STREAM.format(table), trace_id=tag,
                                   proto_rows=types.AppendRowsRequest.ProtoData(
                                       rows=types.ProtoRows(serialized_rows=[tag.encode()])))


def echo(r):
    """Answers each request with a response naming it (in the error message when refused)."""
    tag = r.trace_id
    if tag.startswith("bad"):
        return types.AppendRowsResponse(error={"code": 3, "message": tag})
    time.sleep(random.random() / 500)
    return types.AppendRowsResponse(write_stream=tag)


def test_each_of_many_concurrent_callers_gets_its_own_response():
    opener = FakeOpener(echo)
    shared = SharedAppendStream(opener)
    tags = [("bad" if k % 7 == 0 else "ok") + f"-{k}" for k in range(200)]

    def one(tag):
        r = shared.append(request(tag), "s", SCHEMA, 5)
        return r.error.message if r.error.code else r.write_stream

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(one, tags)) == tags
    assert shared.connections_opened == 1 and len(opener.calls) == 1


def test_an_ended_connection_fails_the_waiting_callers_and_the_next_append_reopens():
    gate, served = threading.Event(), []

    def answer(r):
        if r.trace_id.startswith("hold"):
            gate.wait(5)
            raise RuntimeError("connection reset")  # the RPC ends: no response for this or later ones
        served.append(r.trace_id)
        return ok()

    opener = FakeOpener(answer)
    shared = SharedAppendStream(opener)
    shared.append(request("first"), "s", SCHEMA, 5)
    with ThreadPoolExecutor(4) as pool:
        waiting = [pool.submit(shared.append, request(f"hold-{k}"), "s", SCHEMA, 5) for k in range(4)]
        time.sleep(0.05)
        gate.set()
        for f in waiting:
            with pytest.raises(RuntimeError, match="connection reset"):
                f.result()
    assert shared.append(request("after"), "s", SCHEMA, 5).error.code == 0
    assert served == ["first", "after"] and shared.connections_opened == 2
    assert opener.calls[0].cancelled


def test_a_silent_connection_fails_its_caller_in_time_and_is_replaced():
    opener = FakeOpener(lambda r: time.sleep(10) if r.trace_id == "stuck" else ok())
    shared = SharedAppendStream(opener)
    with pytest.raises(NoAnswer):
        shared.append(request("stuck"), "s", SCHEMA, 0.2)
    assert shared.append(request("next"), "s", SCHEMA, 5).error.code == 0
    assert shared.connections_opened == 2


def test_the_writer_schema_goes_with_the_first_request_and_every_change_of_table_or_schema():
    opener = FakeOpener(lambda r: types.AppendRowsResponse(error={"code": 3}) if r.trace_id == "bad" else ok())
    shared = SharedAppendStream(opener)
    for tag, table, schema in [("a", "t", "s1"), ("b", "t", "s1"), ("c", "u", "s1"), ("d", "u", "s2"),
                               ("e", "u", "s2"), ("bad", "u", "s2"), ("f", "u", "s2")]:
        shared.append(request(tag, table), schema, types.ProtoSchema(proto_descriptor={"name": schema}), 5)
    sent = {r.trace_id: r.proto_rows.writer_schema.proto_descriptor.name for r in opener.calls[0].requests}
    # after a refused request the schema is sent again: the server may not have taken it
    assert sent == {"a": "s1", "b": "", "c": "s1", "d": "s2", "e": "", "bad": "", "f": "s2"}
    assert all(r.write_stream for r in opener.calls[0].requests)  # every request names its table


def test_an_idle_connection_is_replaced_before_it_is_trusted():
    now = [0.0]
    opener = FakeOpener()
    shared = SharedAppendStream(opener, max_idle_s=60, clock=lambda: now[0])
    shared.append(request("a"), "s", SCHEMA, 5)
    now[0] = 30.0
    shared.append(request("b"), "s", SCHEMA, 5)
    now[0] = 100.0
    shared.append(request("c"), "s", SCHEMA, 5)
    assert shared.connections_opened == 2
    assert [r.trace_id for r in opener.calls[1].requests] == ["c"]
    assert opener.calls[1].requests[0].proto_rows.writer_schema == SCHEMA  # a new connection: schema again


def test_a_connection_that_cannot_be_opened_fails_the_append():
    def refuse(requests, metadata):
        raise ConnectionLost("no route")

    with pytest.raises(ConnectionLost):
        SharedAppendStream(refuse).append(request("a"), "s", SCHEMA, 5)


@given(ended=st.sampled_from([None, True, False]), waiting=st.integers(0, 3), idle=st.floats(0, 1000))
def test_reuse_decision(ended, waiting, idle):
    decision = reuse_decision(ended, waiting, idle, 120)
    if ended is None or ended:
        assert decision == "open"
    elif waiting == 0 and idle > 120:
        assert decision == "reopen_idle"
    else:
        assert decision == "reuse"
