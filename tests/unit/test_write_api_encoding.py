"""batchline.adapters.write_api without a server: the proto descriptor built from a BigQuery schema, the value
encodings the Storage Write API expects, the refusals (never drop data silently), and how an append's
response is judged (an in-memory AppendRows call stands in for the gRPC one)."""

from __future__ import annotations

import datetime as dt

import pytest
from append_double import FakeOpener
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import types
from google.protobuf import descriptor_pb2

from batchline.adapters.write_api import (
    StagingAppender,
    StagingWriteError,
    default_stream,
    descriptor_for,
    encode_rows,
    encode_value,
    schema_key,
)
from batchline.settings import Settings

FDP = descriptor_pb2.FieldDescriptorProto
SCHEMA = [
    bigquery.SchemaField("id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("score", "FLOAT"),
    bigquery.SchemaField("score64", "FLOAT64"),
    bigquery.SchemaField("n", "INTEGER"),
    bigquery.SchemaField("n64", "INT64"),
    bigquery.SchemaField("ok", "BOOLEAN"),
    bigquery.SchemaField("ok2", "BOOL"),
    bigquery.SchemaField("day", "DATE"),
    bigquery.SchemaField("at", "TIMESTAMP"),
]
KEY = schema_key(SCHEMA)


def decode(blob: bytes):
    return descriptor_for(KEY)[1].FromString(blob)


def test_descriptor_types_labels_and_order():
    desc, _ = descriptor_for(KEY)
    got = [(f.name, f.number, f.type, f.label) for f in desc.field]
    assert got == [
        ("id", 1, FDP.TYPE_STRING, FDP.LABEL_REQUIRED),
        ("score", 2, FDP.TYPE_DOUBLE, FDP.LABEL_OPTIONAL),
        ("score64", 3, FDP.TYPE_DOUBLE, FDP.LABEL_OPTIONAL),
        ("n", 4, FDP.TYPE_INT64, FDP.LABEL_OPTIONAL),
        ("n64", 5, FDP.TYPE_INT64, FDP.LABEL_OPTIONAL),
        ("ok", 6, FDP.TYPE_BOOL, FDP.LABEL_OPTIONAL),
        ("ok2", 7, FDP.TYPE_BOOL, FDP.LABEL_OPTIONAL),
        ("day", 8, FDP.TYPE_INT32, FDP.LABEL_OPTIONAL),
        ("at", 9, FDP.TYPE_INT64, FDP.LABEL_OPTIONAL),
    ]
    assert descriptor_for(KEY) is descriptor_for(schema_key(list(SCHEMA)))  # cached per schema


def test_date_and_timestamp_encodings():
    assert encode_value("DATE", "1970-01-02") == 1
    assert encode_value("DATE", dt.date(1969, 12, 31)) == -1
    assert encode_value("DATE", dt.date(2039, 3, 3).isoformat()) == (dt.date(2039, 3, 3) - dt.date(1970, 1, 1)).days
    at = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    micros = int(at.timestamp()) * 1_000_000 + 123456
    assert encode_value("TIMESTAMP", at.isoformat()) == micros
    assert encode_value("TIMESTAMP", at) == micros
    assert encode_value("TIMESTAMP", at.replace(tzinfo=None)) == micros  # no zone: UTC, as in BigQuery
    plus2 = at.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert encode_value("TIMESTAMP", plus2.isoformat()) == micros
    assert encode_value("TIMESTAMP", None) is None
    with pytest.raises(TypeError):
        encode_value("DATE", dt.datetime(2024, 1, 1))
    with pytest.raises(TypeError):
        encode_value("TIMESTAMP", dt.date(2024, 1, 1))


def test_rows_round_trip():
    at = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    row = {"id": "a", "score": 1.5, "score64": 2, "n": 7, "n64": -3, "ok": True, "ok2": False,
           "day": "2024-05-06", "at": at.isoformat()}
    [blob] = encode_rows(KEY, [row])
    m = decode(blob)
    assert (m.id, m.score, m.score64, m.n, m.n64, m.ok, m.ok2) == ("a", 1.5, 2.0, 7, -3, True, False)
    assert m.day == (dt.date(2024, 5, 6) - dt.date(1970, 1, 1)).days
    assert m.at == int(at.timestamp()) * 1_000_000
    [blob] = encode_rows(KEY, [{"id": "b", "score": None}])  # NULLs are absent fields
    m = decode(blob)
    assert m.id == "b" and not m.HasField("score") and not m.HasField("at")


def test_unknown_key_refused():
    with pytest.raises(StagingWriteError, match="not columns"):
        encode_rows(KEY, [{"id": "a"}, {"id": "b", "surprise": 1}])


def test_required_missing_refused():
    with pytest.raises(StagingWriteError, match="row 1"):
        encode_rows(KEY, [{"id": "a"}, {"score": 1.0}])
    with pytest.raises(StagingWriteError):
        encode_rows(KEY, [{"id": None}])


@pytest.mark.parametrize("row", [{"id": "a", "n": "x"}, {"id": "a", "n": 1.5}, {"id": "a", "n": True},
                                 {"id": "a", "score": "high"}, {"id": "a", "day": "yesterday"},
                                 {"id": "a", "at": "2024-13-01T00:00:00"}, {"id": 5}])
def test_wrong_types_refused(row):
    with pytest.raises(StagingWriteError):
        encode_rows(KEY, [row])


_UNSUPPORTED = [bigquery.SchemaField("x", "NUMERIC"), bigquery.SchemaField("x", "JSON"),
                bigquery.SchemaField("x", "RECORD", fields=[bigquery.SchemaField("y", "STRING")]),
                bigquery.SchemaField("x", "STRING", mode="REPEATED")]


@pytest.mark.parametrize("field", [f for f in _UNSUPPORTED if f.mode != "REPEATED"])
def test_a_required_column_of_an_unsupported_type_is_refused(field):
    required = bigquery.SchemaField(field.name, field.field_type, mode="REQUIRED", fields=field.fields)
    with pytest.raises(StagingWriteError, match="unsupported column"):
        descriptor_for(schema_key([required]))


@pytest.mark.parametrize("field", _UNSUPPORTED)
def test_a_nullable_column_of_an_unsupported_type_is_left_null_and_a_value_for_it_refused(field):
    """A column added to the main table later (F5) must not stop every append: it is left out of the
    writer schema, its rows get NULL; a row that does give it a value is refused, never dropped."""
    key = schema_key([bigquery.SchemaField("id", "STRING", mode="REQUIRED"), field])
    desc, _ = descriptor_for(key)
    assert [f.name for f in desc.field] == ["id"]
    assert len(encode_rows(key, [{"id": "a"}, {"id": "b", "x": None}])) == 2
    with pytest.raises(StagingWriteError, match="not columns this writer encodes"):
        encode_rows(key, [{"id": "a", "x": ["v"] if field.mode == "REPEATED" else "v"}])


def test_default_stream_name():
    assert default_stream("p.d.t", "x") == "projects/p/datasets/d/tables/t/streams/_default"
    assert default_stream("d.t", "x") == "projects/x/datasets/d/tables/t/streams/_default"
    with pytest.raises(StagingWriteError):
        default_stream("t", "x")


def appender_with(responses) -> tuple[StagingAppender, FakeOpener]:
    """An appender whose connection answers each request with the next of `responses` (an exception
    ends the connection, as an RPC error does; no response left: the server ends the stream)."""
    script = list(responses) if isinstance(responses, list) else responses

    def answer(_request):
        if isinstance(script, Exception):
            raise script
        if not script:
            raise StopIteration_()
        return script.pop(0)

    opener = FakeOpener(answer)
    return StagingAppender(Settings(project="p"), open_call=opener), opener


class StopIteration_(RuntimeError):
    """The fake server ends the stream without answering."""


def ok_response():
    return types.AppendRowsResponse(append_result=types.AppendRowsResponse.AppendResult())


def test_append_sends_one_request_and_returns_count():
    a, opener = appender_with([ok_response(), ok_response()])
    assert a.append("p.d.t", SCHEMA, [{"id": "a"}, {"id": "b"}, {"id": "c"}]) == 3
    [call] = opener.calls
    [req] = call.requests
    stream = "projects/p/datasets/d/tables/t/streams/_default"
    assert req.write_stream == stream and len(req.proto_rows.rows.serialized_rows) == 3
    assert [f.name for f in req.proto_rows.writer_schema.proto_descriptor.field][:2] == ["id", "score"]
    assert call.metadata == (("x-goog-request-params", f"write_stream={stream}"),)
    assert a.append("p.d.t", SCHEMA, []) == 0 and len(call.requests) == 1


@pytest.mark.parametrize("responses", [
    [types.AppendRowsResponse(error={"code": 3, "message": "bad"})],
    [types.AppendRowsResponse(append_result=types.AppendRowsResponse.AppendResult(),
                              row_errors=[types.RowError(index=1, message="nope")])],
    [],  # the stream closed without a response
    RuntimeError("channel closed"),
])
def test_append_not_acknowledged_raises(responses):
    a, _ = appender_with(responses)
    with pytest.raises(StagingWriteError):
        a.append("p.d.t", SCHEMA, [{"id": "a"}])


def test_a_response_without_error_is_an_acknowledgement():
    """As the library's AppendRowsStream reads it; a false success would still be caught, because the
    coordinator counts the write's rows before it records the completion."""
    a, _ = appender_with([types.AppendRowsResponse()])
    assert a.append("p.d.t", SCHEMA, [{"id": "a"}]) == 1


def test_refused_rows_are_never_sent():
    a, opener = appender_with([ok_response()])
    with pytest.raises(StagingWriteError):
        a.append("p.d.t", SCHEMA, [{"id": "a"}, {"id": "b", "extra": 1}])
    assert opener.calls == []
