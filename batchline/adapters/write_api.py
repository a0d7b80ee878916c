"""Staging appends through the BigQuery Storage Write API default stream.

Why: a load job per item costs a job slot and seconds; one AppendRows request on the table's `_default`
stream costs one gRPC round trip (13-18 ms locally once the channel is up), and its rows are readable
as soon as the append is acknowledged. One request per call, so the caller's rows are accepted or
refused as a whole, sent over the process's one shared connection (batchline/adapters/write_stream.py); nothing
is retried here. Pub/Sub redelivery is the retry, and a redelivered item
appends its rows again under a new write id: appends are at-least-once, and consolidation merges only
the write a completion names (batchline/adapters/staging.py).
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Sequence

from google.cloud import bigquery
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import EncodeError

from batchline.adapters.write_stream import OpenCall, SharedAppendStream
from batchline.settings import Settings

APPEND_TIMEOUT_S = 30.0
_FDP = descriptor_pb2.FieldDescriptorProto
# BigQuery column type -> proto2 field type, as the Storage Write API documents the encodings.
# DATE: days since 1970-01-01; TIMESTAMP: microseconds since 1970-01-01T00:00:00Z.
_PROTO_TYPES = {"STRING": _FDP.TYPE_STRING, "FLOAT": _FDP.TYPE_DOUBLE, "FLOAT64": _FDP.TYPE_DOUBLE,
                "INTEGER": _FDP.TYPE_INT64, "INT64": _FDP.TYPE_INT64, "BOOLEAN": _FDP.TYPE_BOOL,
                "BOOL": _FDP.TYPE_BOOL, "DATE": _FDP.TYPE_INT32, "TIMESTAMP": _FDP.TYPE_INT64}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)

SchemaKey = tuple[tuple[str, str, str], ...]


class StagingWriteError(RuntimeError):
    """The Storage Write API refused or did not acknowledge an append."""


def schema_key(schema: Sequence[bigquery.SchemaField]) -> SchemaKey:
    """(name, TYPE, MODE) per column: what the proto descriptor depends on, hashable for the cache."""
    return tuple((f.name, (f.field_type or "").upper(), (f.mode or "NULLABLE").upper()) for f in schema)


_DESCRIPTORS: dict[SchemaKey, tuple[descriptor_pb2.DescriptorProto, type]] = {}
_DESCRIPTORS_LOCK = threading.Lock()


def descriptor_for(key: SchemaKey) -> tuple[descriptor_pb2.DescriptorProto, type]:
    """The proto2 DescriptorProto mirroring the columns (sent inline with each append) and its message
    class, built in a private pool so no global protobuf registry is touched; cached per schema."""
    with _DESCRIPTORS_LOCK:
        cached = _DESCRIPTORS.get(key)
        if cached is not None:
            return cached
        desc = descriptor_pb2.DescriptorProto(name="StagingRow")
        for number, (name, bq_type, mode) in enumerate(key, start=1):
            if not _encodable(bq_type, mode):
                if mode == "REQUIRED":
                    raise StagingWriteError(f"unsupported column type {bq_type} ({mode}) for column {name!r}")
                # A NULLABLE column of a type we do not encode (added to the main table later) is left
                # out of the writer schema: its rows get NULL, which the MERGE writes as a typed NULL
                # anyway (F5). A row giving it a value is refused in encode_rows.
                continue
            desc.field.add(name=name, number=number, type=_PROTO_TYPES[bq_type],
                           label=_FDP.LABEL_REQUIRED if mode == "REQUIRED" else _FDP.LABEL_OPTIONAL)
        file_proto = descriptor_pb2.FileDescriptorProto(name=f"staging_{uuid.uuid4().hex}.proto", syntax="proto2")
        file_proto.message_type.add().CopyFrom(desc)
        pool = descriptor_pool.DescriptorPool()
        try:
            pool.Add(file_proto)
        except (TypeError, ValueError) as exc:  # e.g. a column name that is not a proto identifier
            raise StagingWriteError(f"cannot describe the schema as a proto: {exc}") from exc
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("StagingRow"))
        _DESCRIPTORS[key] = (desc, cls)
        return desc, cls


def encode_value(bq_type: str, value):
    """A Python/JSON value as the Storage Write API wants it: DATE as days, TIMESTAMP as micros (a
    timestamp without a zone is UTC, as in BigQuery); other types pass through for protobuf to check."""
    if value is None:
        return None
    if bq_type == "DATE":
        if isinstance(value, str):
            value = dt.date.fromisoformat(value)
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
            raise TypeError(f"DATE needs an ISO date string or a date, got {value!r}")
        return (value - _EPOCH.date()).days
    if bq_type == "TIMESTAMP":
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if not isinstance(value, dt.datetime):
            raise TypeError(f"TIMESTAMP needs an ISO timestamp string or a datetime, got {value!r}")
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return (value - _EPOCH) // _MICRO
    if bq_type in ("INTEGER", "INT64", "FLOAT", "FLOAT64") and isinstance(value, bool):
        raise TypeError(f"{bq_type} needs a number, got {value!r}")
    return value


def _encodable(bq_type: str, mode: str) -> bool:
    return bq_type in _PROTO_TYPES and mode != "REPEATED"


def encode_rows(key: SchemaKey, rows: Sequence[dict]) -> list[bytes]:
    """Serialize every row, or refuse the whole batch: an unknown key (or a value for a column left out
    of the writer schema), a wrong type or a missing REQUIRED value raises, so no row is sent without
    all of its data."""
    _, cls = descriptor_for(key)
    columns = {name: bq_type for name, bq_type, mode in key if _encodable(bq_type, mode)}
    skipped = {name for name, bq_type, mode in key if not _encodable(bq_type, mode)}
    out = []
    for i, row in enumerate(rows):
        unknown = sorted(k for k in row if k not in columns and not (k in skipped and row[k] is None))
        if unknown:
            raise StagingWriteError(f"row {i} has keys that are not columns this writer encodes: {unknown}")
        msg = cls()
        try:
            for name, value in row.items():
                encoded = None if name in skipped else encode_value(columns[name], value)
                if encoded is not None:
                    setattr(msg, name, encoded)
            out.append(msg.SerializeToString())
        except (TypeError, ValueError, OverflowError, EncodeError) as exc:
            raise StagingWriteError(f"row {i} cannot be encoded: {exc}") from exc
    return out


def default_stream(table_id: str, default_project: str) -> str:
    """`project.dataset.table` (or `dataset.table`) -> the table's `_default` write stream name."""
    parts = table_id.split(".")
    if len(parts) == 2:
        parts = [default_project, *parts]
    if len(parts) != 3 or not all(parts):
        raise StagingWriteError(f"not a table id: {table_id!r}")
    project, dataset, table = parts
    return f"projects/{project}/datasets/{dataset}/tables/{table}/streams/_default"


class StagingAppender:
    """Staging appends of one process: one BigQueryWriteClient (one gRPC channel, ~370 ms to set up)
    and one shared AppendRows connection (batchline/adapters/write_stream.py), both built on first use."""

    def __init__(self, settings: Settings, open_call: OpenCall | None = None) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._client = None
        self._open_call = open_call  # tests and benches; default: the client's AppendRows stub
        self._stream: SharedAppendStream | None = None

    def client(self):
        with self._lock:
            if self._client is None:
                from google.cloud import bigquery_storage_v1

                host = self.settings.bigquery_write_emulator_host
                if host:
                    import grpc
                    from google.cloud.bigquery_storage_v1.services.big_query_write import transports

                    transport = transports.BigQueryWriteGrpcTransport(channel=grpc.insecure_channel(host))
                    self._client = bigquery_storage_v1.BigQueryWriteClient(transport=transport)
                else:
                    self._client = bigquery_storage_v1.BigQueryWriteClient()
            return self._client

    def _stub_call(self, requests, metadata):
        # The transport's stub, not client.append_rows: that wrapper retries a failed open with the same
        # (already started) request iterator and blocks until the first response; nothing is retried here.
        return self.client().transport.append_rows(requests, metadata=metadata)

    @property
    def stream(self) -> SharedAppendStream:
        with self._lock:
            if self._stream is None:
                self._stream = SharedAppendStream(self._open_call or self._stub_call)
            return self._stream

    @property
    def connections_opened(self) -> int:
        """AppendRows connections this appender has opened (1 unless one ended or idled out)."""
        return self._stream.connections_opened if self._stream is not None else 0

    def append(self, table_id: str, schema: list[bigquery.SchemaField], rows: list[dict]) -> int:
        """ONE AppendRows request with all rows on the table's `_default` stream, over the shared
        connection; returns len(rows) once the API acknowledged THIS request, raises StagingWriteError
        otherwise. No rows: no request, returns 0."""
        if not rows:
            return 0
        key = schema_key(schema)
        desc, _ = descriptor_for(key)
        serialized = encode_rows(key, rows)
        stream = default_stream(table_id, self.settings.project)
        from google.cloud.bigquery_storage_v1 import types

        request = types.AppendRowsRequest(
            write_stream=stream,
            proto_rows=types.AppendRowsRequest.ProtoData(rows=types.ProtoRows(serialized_rows=serialized)))
        try:
            response = self.stream.append(request, key, types.ProtoSchema(proto_descriptor=desc), APPEND_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - an RPC error, a lost or silent connection: not acknowledged
            raise StagingWriteError(f"append to {stream} failed: {_describe(exc)}") from exc
        row_errors = list(response.row_errors)
        if response.error.code or row_errors:
            detail = "; ".join(f"row {e.index}: {e.message}" for e in row_errors[:5])
            raise StagingWriteError(f"append to {stream} refused: code {response.error.code} "
                                    f"{response.error.message} {detail}".strip())
        # No error and no row errors is success, as the library's own AppendRowsStream treats it
        # (a default-stream append_result may be an empty message).
        return len(rows)


def _describe(exc: BaseException) -> str:
    """An RPC error as its status and details (grpc.RpcError mapped to the api_core exception)."""
    import grpc
    from google.api_core import exceptions as core_exceptions

    if isinstance(exc, grpc.RpcError) and not isinstance(exc, core_exceptions.GoogleAPIError):
        return str(core_exceptions.from_grpc_error(exc))
    return str(exc) or repr(exc)
