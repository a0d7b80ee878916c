"""The floor: what an item costs when it does nothing but the round trips it cannot avoid, measured on
the same local stack with the official clients, and what one MERGE of a batch's rows costs.

    PYTHONPATH=$PWD .venv/bin/python bench/floor.py [--sizes 450 2000] [--repeat 2] [--state-dir DIR]

Per item (a real Pub/Sub PUSH delivery, at whatever concurrency the emulator pushes with):
  1. the push itself, to a tiny HTTP handler in its own process (`--serve`, a ThreadingHTTPServer);
  2. one durable append of the item's 5 rows to ONE batch table through the BigQuery Storage Write
     API default stream (bigquery_storage_v1.BigQueryWriteClient over gRPC to bqemulator, rows as
     serialized protos with an inline DescriptorProto built from the table schema);
  3. one Pub/Sub publish (waited for);
  4. one Firestore write (the item's state document);
  then 200. The harness publishes N work messages, waits until N state documents exist, and takes
  the last document's write time as the end of the push phase. Then one MERGE (the production
  statement shape, batchline.adapters.merge.merge_sql, over the one table instead of a UNION) of the
  N*5 rows into a copy of the main table.

floor(N) = push phase + MERGE. Writes bench/results/floor-<time>.json with the per-step costs inside the
handler (p50/p95 ms), the push phase, the MERGE, and a linear model (per-item seconds, MERGE fixed +
per-item) that bench/sweep.py uses for sizes it was not measured at. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROWS_PER_ITEM = 5
ACK_DEADLINE_S = 60


# ------------------------------------------------------------------------------------------------
# Storage Write API: proto descriptor from the BigQuery schema, default-stream append
# ------------------------------------------------------------------------------------------------

def descriptor_for(schema: list[dict]):
    """A proto2 DescriptorProto whose fields mirror the table's columns, in order.

    BigQuery's Storage Write API encodings: STRING -> string, FLOAT64 -> double, INT64 -> int64,
    BOOL -> bool, DATE -> int32 (days since the epoch), TIMESTAMP -> int64 (microseconds since the epoch).
    REQUIRED columns are `required`, the rest `optional`. Returns (DescriptorProto, message class)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FieldDescriptorProto
    types = {"STRING": fdp.TYPE_STRING, "FLOAT64": fdp.TYPE_DOUBLE, "FLOAT": fdp.TYPE_DOUBLE,
             "INT64": fdp.TYPE_INT64, "INTEGER": fdp.TYPE_INT64, "BOOL": fdp.TYPE_BOOL, "BOOLEAN": fdp.TYPE_BOOL,
             "DATE": fdp.TYPE_INT32, "TIMESTAMP": fdp.TYPE_INT64}
    desc = descriptor_pb2.DescriptorProto(name="BatchRow")
    for n, col in enumerate(schema, start=1):
        desc.field.add(name=col["name"], number=n, type=types[col["type"]],
                       label=fdp.LABEL_REQUIRED if col["mode"] == "REQUIRED" else fdp.LABEL_OPTIONAL)
    file_proto = descriptor_pb2.FileDescriptorProto(name=f"bench_row_{uuid.uuid4().hex}.proto", syntax="proto2")
    file_proto.message_type.add().CopyFrom(desc)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("BatchRow"))
    return desc, cls


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def encode_value(bq_type: str, value):
    if value is None:
        return None
    if bq_type == "DATE":
        return (dt.date.fromisoformat(value) - _EPOCH.date()).days
    if bq_type == "TIMESTAMP":
        t = dt.datetime.fromisoformat(value)
        return (t - _EPOCH) // dt.timedelta(microseconds=1)
    return value


def rows_for(item_id: str, game_date: str, batch_id: str) -> list[dict]:
    now = dt.datetime.now(dt.UTC).isoformat()
    return [{"prediction_id": f"{game_date}|{item_id}|s{k}", "game_date": game_date, "game_id": "g00",
             "player_lookup": item_id, "system_id": f"s{k}", "prop_type": "points",
             "predicted_value": 10.0 + k, "confidence": 0.5, "line_value": None, "recommendation": "PASS",
             "batch_id": batch_id, "created_at": now, "updated_at": now, "is_active": True}
            for k in range(ROWS_PER_ITEM)]


class DefaultStreamWriter:
    """One BigQueryWriteClient (one gRPC channel) per process; one AppendRows call per item, on the
    table's `_default` stream, waiting for the append's response (durable on success)."""

    def __init__(self, grpc_host: str, project: str, dataset: str, table: str, schema: list[dict]):
        import grpc
        from google.cloud import bigquery_storage_v1
        from google.cloud.bigquery_storage_v1.services.big_query_write.transports import BigQueryWriteGrpcTransport

        self.types = bigquery_storage_v1.types
        channel = grpc.insecure_channel(grpc_host)
        self.client = bigquery_storage_v1.BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))
        self.stream = f"projects/{project}/datasets/{dataset}/tables/{table}/streams/_default"
        self.schema = schema
        self.descriptor, self.row_cls = descriptor_for(schema)

    def append(self, rows: list[dict]) -> None:
        t = self.types
        serialized = []
        for row in rows:
            msg = self.row_cls()
            for col in self.schema:
                v = encode_value(col["type"], row.get(col["name"]))
                if v is not None:
                    setattr(msg, col["name"], v)
            serialized.append(msg.SerializeToString())
        req = t.AppendRowsRequest(
            write_stream=self.stream,
            proto_rows=t.AppendRowsRequest.ProtoData(
                writer_schema=t.ProtoSchema(proto_descriptor=self.descriptor),
                rows=t.ProtoRows(serialized_rows=serialized)))
        responses = self.client.append_rows(iter([req]),
                                            metadata=(("x-goog-request-params", f"write_stream={self.stream}"),))
        resp = next(iter(responses))
        if resp.error.code or list(resp.row_errors):
            raise RuntimeError(f"append failed: {resp.error.code} {resp.error.message} {list(resp.row_errors)[:3]}")


# ------------------------------------------------------------------------------------------------
# The handler process
# ------------------------------------------------------------------------------------------------

def serve(port: int, cfg_path: str) -> None:
    from google.cloud import firestore, pubsub_v1

    cfg = json.loads(Path(cfg_path).read_text())
    writer = DefaultStreamWriter(cfg["grpc_host"], cfg["project"], cfg["dataset"], cfg["table"], cfg["schema"])
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(cfg["project"], cfg["completion_topic"])
    fs = firestore.Client(project=cfg["project"])
    coll = fs.collection(cfg["collection"])
    log_lock = threading.Lock()
    log = open(cfg["log"], "a")  # noqa: SIM115 - lives as long as the process

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            return

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            t0 = time.monotonic()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                msg = json.loads(base64.b64decode(json.loads(body)["message"]["data"]))
                t1 = time.monotonic()
                writer.append(rows_for(msg["item_id"], cfg["game_date"], cfg["batch_id"]))
                t2 = time.monotonic()
                publisher.publish(topic, json.dumps(msg).encode()).result(timeout=30)
                t3 = time.monotonic()
                coll.document(msg["item_id"]).set({"status": "completed", "done_at": firestore.SERVER_TIMESTAMP,
                                                   "at": dt.datetime.now(dt.UTC)})
                t4 = time.monotonic()
                code = 200
                rec = {"item": msg["item_id"], "append_ms": (t2 - t1) * 1e3, "publish_ms": (t3 - t2) * 1e3,
                       "state_ms": (t4 - t3) * 1e3, "handler_ms": (t4 - t0) * 1e3, "end": time.time()}
            except Exception as exc:  # noqa: BLE001 - answered 500, Pub/Sub redelivers; recorded
                code, rec = 500, {"error": repr(exc)[:500], "end": time.time()}
            with log_lock:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


# ------------------------------------------------------------------------------------------------
# The harness
# ------------------------------------------------------------------------------------------------

def _pct(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)


def merge_once(clients, copy_table: str, source_table: str, batch_id: str, day: dt.date, n: int) -> dict:
    """The production MERGE shape over one source table, into the copy of the main table. Since issue 15
    its lists of merged and scheduled items are a pin's rows in the manifest table (batchline/adapters/manifests.py):
    they are written first, timed apart (`pin_s`, not part of the floor: what an item cannot avoid is its
    append and one MERGE, not this design's bookkeeping)."""
    import inspect
    from dataclasses import replace

    from google.cloud import bigquery

    from batchline.adapters.merge_sql import merge_params, merge_sql

    s = replace(clients.settings, main_table=copy_table)
    schema = list(clients.bq.get_table(s.main_table_id).schema)
    cols = ", ".join(f"`{f.name}`" for f in schema)
    src = (f"SELECT {cols} FROM `{s.project}.{s.staging_dataset}.{source_table}` "
           f"WHERE game_date = @game_date AND batch_id = @batch_id")
    items = [f"item_{k:05d}" for k in range(n)]
    sql = merge_sql(s, schema, src, {f.name for f in schema})
    pin_s = None
    if "pin" in inspect.signature(merge_params).parameters:
        from batchline.adapters import manifests
        from batchline.domain import ids

        pin, t0 = ids.new_pin(0, 0), time.monotonic()
        manifests.write(clients.bq, clients.appender, s, manifests.rows(
            batch_id, pin, {i: ids.new_write_id() for i in items}, (), items, dt.datetime.now(dt.UTC)))
        pin_s = round(time.monotonic() - t0, 3)
        params = merge_params(batch_id, day, pin)
    else:  # the code before issue 15: the lists were array parameters
        params = merge_params(batch_id, day, items, items)
    t0 = time.monotonic()
    job = clients.bq.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params))
    job.result()
    return {"merge_s": round(time.monotonic() - t0, 3), "affected_rows": int(job.num_dml_affected_rows or 0),
            "pin_s": pin_s}


def one_size(info, clients, n: int, handler_url: str, cfg: dict, cfg_path: Path) -> dict:
    from google.cloud import bigquery, pubsub_v1

    from batchline.local.provision import main_table_schema

    s = clients.settings
    tag = uuid.uuid4().hex[:8]
    day = dt.date(2039, 1, 1) + dt.timedelta(days=int(time.time()) % 3000)
    batch_id = f"{day:%Y%m%d}_{uuid.uuid4().hex[:12]}"  # a valid batch id (batchline/domain/ids.py): a pin names it
    table = f"floor_batch_{tag}"
    bq_table = bigquery.Table(s.staging_table_id(table), schema=main_table_schema())
    clients.bq.create_table(bq_table)
    collection = f"floor_items_{tag}"
    cfg.update({"table": table, "batch_id": batch_id, "game_date": day.isoformat(), "collection": collection})
    cfg_path.write_text(json.dumps(cfg))  # the handler reads it at start: restarted per size below
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(cfg["port"]), str(cfg_path)],
                            env={**os.environ}, start_new_session=True)
    try:
        for _ in range(200):
            try:
                import requests
                requests.get(handler_url, timeout=0.5)
                break
            except requests.RequestException:
                time.sleep(0.1)
        pub = pubsub_v1.PublisherClient()
        sub = pubsub_v1.SubscriberClient()
        work_topic = pub.topic_path(s.project, f"floor-work-{tag}")
        pub.create_topic(name=work_topic)
        sub_path = sub.subscription_path(s.project, f"floor-work-push-{tag}")
        sub.create_subscription(request={"name": sub_path, "topic": work_topic, "ack_deadline_seconds": ACK_DEADLINE_S,
                                         "push_config": {"push_endpoint": handler_url + "/work"}})
        Path(cfg["log"]).write_text("")
        t_pub = time.time()
        t0 = time.monotonic()
        futures = [pub.publish(work_topic, json.dumps({"item_id": f"item_{k:05d}"}).encode()) for k in range(n)]
        for f in futures:
            f.result(timeout=120)
        publish_all_s = time.monotonic() - t0
        coll = clients.fs.collection(collection)
        while True:
            done = int(coll.count().get()[0][0].value)
            if done >= n or time.monotonic() - t0 > 600:
                break
            time.sleep(0.2)
        recs = [json.loads(line) for line in Path(cfg["log"]).read_text().splitlines() if line.strip()]
        ok = [x for x in recs if "error" not in x]
        errors = [x["error"] for x in recs if "error" in x]
        push_phase = max(x["end"] for x in ok) - t_pub if ok else None
        sub.delete_subscription(subscription=sub_path)
        merge = merge_once(clients, cfg["copy_table"], table, batch_id, day, n)
        rows = list(clients.bq.query(f"SELECT COUNT(*) AS n, COUNT(DISTINCT prediction_id) AS k FROM "
                                     f"`{s.staging_table_id(table)}`").result())[0]
        handler = {k: {"p50": _pct([x[k] for x in ok], 50), "p95": _pct([x[k] for x in ok], 95),
                       "mean": round(statistics.fmean([x[k] for x in ok]), 2) if ok else None}
                   for k in ("append_ms", "publish_ms", "state_ms", "handler_ms")}
        # deliveries in flight at once, from the handler's own start/end times
        spans = sorted((x["end"] - x["handler_ms"] / 1e3, x["end"]) for x in ok)
        events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
        cur = peak = 0
        for _, d in events:
            cur += d
            peak = max(peak, cur)
        busy = sum(b - a for a, b in spans)
        return {
            "n": n, "push_phase_s": round(push_phase, 3) if push_phase else None,
            "publish_work_messages_s": round(publish_all_s, 3),
            "per_item_s": round(push_phase / n, 4) if push_phase else None,
            "merge_s": merge["merge_s"], "merge_affected_rows": merge["affected_rows"], "pin_s": merge["pin_s"],
            "floor_s": round(push_phase + merge["merge_s"], 3) if push_phase else None,
            "handler_ms": handler, "handler_errors": len(errors), "handler_error_samples": errors[:3],
            "deliveries": len(recs), "peak_concurrent_deliveries": peak,
            "mean_concurrent_deliveries": round(busy / push_phase, 2) if push_phase else None,
            "rows_appended": int(rows["n"]), "distinct_prediction_ids": int(rows["k"]),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        try:
            clients.bq.delete_table(s.staging_table_id(table), not_found_ok=True)
        except Exception as exc:  # noqa: BLE001 - cleanup only
            print(f"could not delete {table}: {exc}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[450, 2000])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--state-dir", default=None)
    ap.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine before each run")
    ap.add_argument("--serve", nargs=2, metavar=("PORT", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return
    import signal

    # `timeout`/kill: run the finally blocks (stop the handler process, drop the tables)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import tempfile

    from common import loadavg, machine, r, stack, utc_now, wait_quiet, write_json
    from google.cloud import bigquery, pubsub_v1

    from batchline.local import emulators
    from batchline.local import processes as procs
    from batchline.local.provision import main_table_schema

    with stack(args.state_dir) as info, tempfile.TemporaryDirectory(prefix="floor-") as tmp:
        clients = info.activate()
        s = clients.settings
        bq_handle = info.handles[emulators.BIGQUERY]
        copy_table = f"floor_main_copy_{uuid.uuid4().hex[:8]}"
        main_copy = clients.bq.get_table(s.main_table_id)
        t = bigquery.Table(f"{s.project}.{s.main_dataset}.{copy_table}", schema=main_table_schema())
        t.time_partitioning, t.clustering_fields = main_copy.time_partitioning, main_copy.clustering_fields
        clients.bq.create_table(t)
        clients.bq.query(f"INSERT INTO `{t.project}.{t.dataset_id}.{copy_table}` SELECT * FROM `{s.main_table_id}`"
                         ).result()
        # COUNT(*), not num_rows: bqemulator leaves num_rows at 0 after DML (seen: 0 for ~30,000 rows)
        main_rows = list(clients.bq.query(f"SELECT COUNT(*) AS n FROM `{t.project}.{t.dataset_id}.{copy_table}`"
                                          ).result())[0]["n"]
        port = procs.free_port()
        cfg = {"grpc_host": f"127.0.0.1:{bq_handle.extra_ports['grpc']}", "project": s.project,
               "dataset": s.staging_dataset, "schema": [{"name": c.name, "type": c.field_type, "mode": c.mode}
                                                        for c in main_table_schema()],
               "completion_topic": f"floor-completions-{uuid.uuid4().hex[:8]}", "port": port,
               "log": str(Path(tmp) / "handler.jsonl"), "copy_table": copy_table}
        pubsub_v1.PublisherClient().create_topic(name=pubsub_v1.PublisherClient.topic_path(
            s.project, cfg["completion_topic"]))
        runs = []
        try:
            for rep in range(args.repeat):
                for n in args.sizes:
                    waited = {} if args.no_wait else wait_quiet()
                    before = loadavg()
                    run = one_size(info, clients, n, f"http://127.0.0.1:{port}", cfg, Path(tmp) / "cfg.json")
                    run.update({"repeat": rep, "wait_quiet": waited, "loadavg_before": before,
                                "loadavg_after": loadavg()})
                    print(json.dumps(run), flush=True)
                    runs.append(run)
        finally:
            clients.bq.delete_table(f"{s.project}.{s.main_dataset}.{copy_table}", not_found_ok=True)
    good = [x for x in runs if x.get("floor_s")]
    model = {}
    if good:
        per_item = statistics.median(x["per_item_s"] for x in good)
        ns = sorted({x["n"] for x in good})
        med = {n: statistics.median(x["merge_s"] for x in good if x["n"] == n) for n in ns}
        slope = (med[ns[-1]] - med[ns[0]]) / (ns[-1] - ns[0]) if len(ns) > 1 else 0.0
        model = {"per_item_s": round(per_item, 5), "merge_per_item_s": round(max(slope, 0.0), 6),
                 "merge_fixed_s": round(med[ns[0]] - max(slope, 0.0) * ns[0], 3)}
    # the floor at each size: the median of its runs
    summary = []
    for n in sorted({x["n"] for x in good}):
        xs = [x for x in good if x["n"] == n]
        summary.append({"n": n, "floor_s": r(statistics.median(x["floor_s"] for x in xs)),
                        "push_phase_s": r(statistics.median(x["push_phase_s"] for x in xs)),
                        "merge_s": r(statistics.median(x["merge_s"] for x in xs)), "runs": len(xs)})
    out = {"kind": "floor", "at": utc_now(), "machine": machine(), "main_table_rows_in_copy": main_rows,
           "runs": summary, "all_runs": runs, "model": model,
           "note": "floor(N) = push phase (publish N -> last state write) + one MERGE of N*5 rows; median of runs"}
    path = write_json(f"floor-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json", out)
    print(json.dumps({"runs": summary, "model": model}, indent=1), "->", path.name)


if __name__ == "__main__":
    main()
