"""The gRPC half of the counting shim (bench/cost_counting.py): an interceptor on every channel a
function process opens, and what each Firestore, Pub/Sub and Storage Write API message means for the
bill. Every call is counted (`grpc|<method>|n`, request and response messages and bytes, errors); then:

* Firestore: document reads (each document a BatchGetDocuments or RunQuery returns; a query returning
  nothing is billed one read; an aggregation one read per 1,000 entries counted), writes and deletes of
  each successful Commit (per document path too, for the hottest-document rate), transactions begun,
  rollbacks and failed commits;
* Pub/Sub: publish requests, messages, their billed bytes (data + attributes + 20 + message id) and the
  request's billed bytes (at least 1,000);
* Storage Write API: AppendRows requests, rows and serialized row bytes, in total and per destination
  (`wapi|table|<kind>|...`: the batch staging table, the manifest table), and a timed event per request
  to a staging table (its growth, which prices the queries reading it).
Bytes are the serialized size of the protobuf messages (`ByteSize()`).
"""

from __future__ import annotations

import math
import time

import grpc
from cost_model import pubsub_message_bytes, pubsub_request_billable

FS = "/google.firestore.v1.Firestore/"
PUBLISH = "/google.pubsub.v1.Publisher/Publish"
APPEND = "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows"


def destination_kind(write_stream: str) -> str:
    """What an AppendRows request writes to, from its stream name (`projects/p/datasets/d/tables/t/streams/s`):
    "staging" for a batch staging table (`stg_<batch>`), else the table's name (`batchline_manifests`);
    "" when the request names no stream (batchline's requests always do: write_api.StagingAppender)."""
    parts = write_stream.split("/")
    if "tables" not in parts or parts.index("tables") + 1 >= len(parts):
        return ""
    table = parts[parts.index("tables") + 1]
    return "staging" if table.startswith("stg_") else table


def _pb(msg):
    """The raw protobuf of a proto-plus message (gapic requests and responses), or the message itself."""
    to_pb = getattr(type(msg), "pb", None)
    try:
        return to_pb(msg) if to_pb is not None else msg
    except TypeError:
        return msg


def _size(msg) -> int:
    try:
        return _pb(msg).ByteSize()
    except AttributeError:
        return 0


def _short(method: str) -> str:
    return method.rsplit(".", 1)[-1]


class _Stream:
    """A response stream (a grpc Call and iterator) that counts what it yields and delegates the rest."""

    def __init__(self, call, on_item, on_end) -> None:
        self._call, self._on_item, self._on_end, self._ended = call, on_item, on_end, False

    def __iter__(self):
        return self

    def __next__(self):
        try:
            item = next(self._call)
        except StopIteration:
            self._end()
            raise
        except grpc.RpcError:
            self._end(error=True)
            raise
        self._on_item(item)
        return item

    def _end(self, error: bool = False) -> None:
        if not self._ended:
            self._ended = True
            self._on_end(error)

    def __getattr__(self, name):
        return getattr(self._call, name)


class CountingInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                          grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, tally) -> None:
        self.tally = tally

    def _count_request(self, method: str, request) -> None:
        self.tally.add_many({f"grpc|{_short(method)}|n": 1, f"grpc|{_short(method)}|req_msgs": 1,
                             f"grpc|{_short(method)}|req_bytes": _size(request)})

    def intercept_unary_unary(self, continuation, details, request):
        method = details.method
        self._count_request(method, request)
        outcome = continuation(details, request)
        outcome.add_done_callback(lambda f: self._unary_done(method, request, f))
        return outcome

    def _unary_done(self, method: str, request, future) -> None:
        error = future.exception() is not None
        response = None if error else future.result()
        counts = {f"grpc|{_short(method)}|errors": 1} if error else {
            f"grpc|{_short(method)}|resp_msgs": 1, f"grpc|{_short(method)}|resp_bytes": _size(response)}
        if method.startswith(FS):
            counts.update(self._firestore_unary(method[len(FS):], request, error))
        elif method == PUBLISH and not error:
            counts.update(_publish_counts(request, response))
        self.tally.add_many(counts)

    def _firestore_unary(self, name: str, request, error: bool) -> dict:
        if name == "Commit" or name == "BatchWrite":
            return {"fs|failed_commits": 1} if error else self._commit(request)
        if error:
            return {}
        return {"GetDocument": {"fs|reads": 1}, "BeginTransaction": {"fs|transactions": 1},
                "Rollback": {"fs|rollbacks": 1}}.get(name, {})

    def _commit(self, request) -> dict:
        pb = _pb(request)
        counts = {"fs|commits": 1, "fs|commits_in_transaction": 1 if pb.transaction else 0}
        now = time.time()
        for w in pb.writes:
            op = w.WhichOneof("operation")
            path = w.update.name if op == "update" else (w.delete if op == "delete" else w.transform.document)
            key = "fs|deletes" if op == "delete" else "fs|writes"
            counts[key] = counts.get(key, 0) + 1
            counts["fs|field_transforms"] = counts.get("fs|field_transforms", 0) + len(w.update_transforms)
            if op != "delete":
                self.tally.doc_write(path, now)
        return counts

    def intercept_unary_stream(self, continuation, details, request):
        method = details.method
        self._count_request(method, request)
        call = continuation(details, request)
        name = method[len(FS):] if method.startswith(FS) else ""
        state = {"docs": 0}

        def on_item(resp):
            counts = {f"grpc|{_short(method)}|resp_msgs": 1, f"grpc|{_short(method)}|resp_bytes": _size(resp)}
            counts.update(_firestore_stream_item(name, resp, state))
            self.tally.add_many(counts)

        def on_end(error: bool):
            if error:
                self.tally.add(f"grpc|{_short(method)}|errors")
            elif name == "RunQuery" and state["docs"] == 0:
                self.tally.add_many({"fs|reads": 1, "fs|empty_queries": 1})

        return _Stream(call, on_item, on_end)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        self.tally.add(f"grpc|{_short(details.method)}|n")
        return continuation(details, request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        method = details.method
        self.tally.add(f"grpc|{_short(method)}|n")

        def counted():
            for req in request_iterator:
                counts = {f"grpc|{_short(method)}|req_msgs": 1, f"grpc|{_short(method)}|req_bytes": _size(req)}
                if method == APPEND:
                    pb = _pb(req)
                    rows = pb.proto_rows.rows.serialized_rows
                    nbytes = sum(len(r) for r in rows)
                    kind = destination_kind(pb.write_stream)
                    counts.update({"wapi|append|requests": 1, "wapi|append|rows": len(rows),
                                   "wapi|append|row_bytes": nbytes, f"wapi|table|{kind}|requests": 1,
                                   f"wapi|table|{kind}|rows": len(rows), f"wapi|table|{kind}|row_bytes": nbytes})
                    if kind == "staging":
                        self.tally.event(e="a", t=round(time.time(), 4), rows=len(rows), b=nbytes)
                self.tally.add_many(counts)
                yield req

        call = continuation(details, counted())

        def on_item(resp):
            counts = {f"grpc|{_short(method)}|resp_msgs": 1, f"grpc|{_short(method)}|resp_bytes": _size(resp)}
            if method == APPEND and (_pb(resp).error.code or len(_pb(resp).row_errors)):
                counts["wapi|append|refused"] = 1
            self.tally.add_many(counts)

        def on_end(error: bool):
            if error:
                self.tally.add(f"grpc|{_short(method)}|errors")

        return _Stream(call, on_item, on_end)


def _firestore_stream_item(name: str, resp, state: dict) -> dict:
    pb = _pb(resp)
    if name == "BatchGetDocuments":
        which = pb.WhichOneof("result")
        return {"fs|reads": 1, "fs|reads_found": 1} if which == "found" else (
            {"fs|reads": 1, "fs|reads_missing": 1} if which == "missing" else {})
    if name == "RunQuery" and pb.HasField("document"):
        state["docs"] += 1
        return {"fs|reads": 1, "fs|query_docs": 1}
    if name == "RunAggregationQuery" and pb.HasField("result"):
        counted = sum(v.integer_value for v in pb.result.aggregate_fields.values())
        return {"fs|reads": max(1, math.ceil(counted / 1000)), "fs|aggregation_queries": 1}
    return {}


def _publish_counts(request, response) -> dict:
    pb, resp = _pb(request), _pb(response)
    topic = pb.topic.rsplit("/", 1)[-1]
    ids = list(resp.message_ids) if resp is not None else []
    sizes = [pubsub_message_bytes(len(m.data), dict(m.attributes), len(ids[i]) if i < len(ids) else 16,
                                  m.ordering_key) for i, m in enumerate(pb.messages)]
    return {f"publish|{topic}|requests": 1, f"publish|{topic}|messages": len(sizes),
            f"publish|{topic}|message_bytes": sum(sizes),
            f"publish|{topic}|billable_bytes": pubsub_request_billable(sizes)}


def install(tally) -> None:
    """Every channel opened from now on counts its calls."""
    interceptor = CountingInterceptor(tally)
    orig_insecure, orig_secure = grpc.insecure_channel, grpc.secure_channel

    def insecure_channel(*args, **kwargs):
        return grpc.intercept_channel(orig_insecure(*args, **kwargs), interceptor)

    def secure_channel(*args, **kwargs):
        return grpc.intercept_channel(orig_secure(*args, **kwargs), interceptor)

    grpc.insecure_channel, grpc.secure_channel = insecure_channel, secure_channel
