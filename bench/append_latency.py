"""Per-append latency of staging appends: one AppendRows stream per append (the design before issue 18
item 2: open, one request, cancel) vs the process's one shared connection (batchline/adapters/write_stream.py),
on a bqemulator of its own (batchline's launcher), 1 and 4 threads, the worker's 5 rows per append.

    PYTHONPATH=. .venv/bin/python bench/append_latency.py [--appends 300] [--threads 1 4]

Writes bench/results/append-latency-<utc>.json and prints a markdown table. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from common import git_rev, loadavg, machine, percentile, r, utc_now, write_json
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from batchline.adapters import staging
from batchline.adapters.write_api import (
    APPEND_TIMEOUT_S,
    StagingAppender,
    default_stream,
    descriptor_for,
    encode_rows,
    schema_key,
)
from batchline.local import emulators
from batchline.local import processes as procs
from batchline.settings import Settings

PROJECT, DATASET = "append-latency", "staging"
SCHEMA = [bigquery.SchemaField("prediction_id", "STRING", mode="REQUIRED"),
          bigquery.SchemaField("player_lookup", "STRING"), bigquery.SchemaField("predicted_value", "FLOAT"),
          bigquery.SchemaField(staging.ITEM_COLUMN, "STRING"), bigquery.SchemaField(staging.WRITE_COLUMN, "STRING")]


def rows(tag: str) -> list[dict]:
    return [{"prediction_id": f"{tag}/{k}", "player_lookup": tag, "predicted_value": k + 0.5,
             staging.ITEM_COLUMN: tag, staging.WRITE_COLUMN: uuid.uuid4().hex} for k in range(5)]


def per_item_append(appender: StagingAppender, table_id: str, batch: list[dict]) -> None:
    """The replaced path, as write_api.py did it before: a bidi stream opened for one request, then closed."""
    from google.cloud.bigquery_storage_v1 import types

    key = schema_key(SCHEMA)
    desc, _ = descriptor_for(key)
    stream = default_stream(table_id, PROJECT)
    request = types.AppendRowsRequest(write_stream=stream, proto_rows=types.AppendRowsRequest.ProtoData(
        writer_schema=types.ProtoSchema(proto_descriptor=desc),
        rows=types.ProtoRows(serialized_rows=encode_rows(key, batch))))
    responses = appender.client().append_rows(iter([request]), timeout=APPEND_TIMEOUT_S,
                                              metadata=(("x-goog-request-params", f"write_stream={stream}"),))
    try:
        response = next(iter(responses))
    finally:
        responses.cancel()
    if response.error.code:
        raise RuntimeError(response.error.message)


def measure(mode: str, threads: int, appends: int, host: str, bq: bigquery.Client) -> dict:
    table_id = f"{PROJECT}.{DATASET}.t_{uuid.uuid4().hex[:8]}"
    bq.create_table(bigquery.Table(table_id, schema=SCHEMA))
    appender = StagingAppender(Settings(project=PROJECT, bigquery_write_emulator_host=host))
    do = (lambda b: per_item_append(appender, table_id, b)) if mode == "per_item" else (
        lambda b: appender.append(table_id, SCHEMA, b))
    do(rows("warm"))  # the channel (and, shared, the connection) is set up once per process either way

    def one(k: int) -> float:
        t0 = time.perf_counter()
        do(rows(f"{mode}{threads}_{k}"))
        return (time.perf_counter() - t0) * 1000

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        ms = list(pool.map(one, range(appends)))
    wall = time.perf_counter() - t0
    return {"mode": mode, "threads": threads, "appends": appends, "p50_ms": r(percentile(ms, 50), 2),
            "p95_ms": r(percentile(ms, 95), 2), "mean_ms": r(sum(ms) / len(ms), 2),
            "appends_per_s": r(appends / wall, 1),
            "connections_opened": appender.connections_opened if mode == "shared" else appends + 1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--appends", type=int, default=300)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as state:
        h = emulators.start_bigquery(state, project=PROJECT)
        try:
            bq = bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(),
                                 client_options=ClientOptions(api_endpoint=f"http://{h.host}"))
            bq.create_dataset(DATASET)
            load_before = loadavg()
            results = [measure(mode, t, args.appends, emulators.bigquery_write_host(h), bq)
                       for t in args.threads for mode in ("per_item", "shared")]
        finally:
            procs.stop(h)
    payload = {"kind": "append-latency", "at": utc_now(), "commit": git_rev(), "machine": machine(),
               "loadavg_before": load_before, "loadavg_after": loadavg(), "results": results}
    path = write_json(f"append-latency-{payload['at'].replace(':', '').replace('-', '')[:15]}.json", payload)
    print("| mode | threads | appends | p50 ms | p95 ms | mean ms | appends/s | connections |")
    print("|---|---|---|---|---|---|---|---|")
    for x in results:
        print(f"| {x['mode']} | {x['threads']} | {x['appends']} | {x['p50_ms']} | {x['p95_ms']} | {x['mean_ms']} "
              f"| {x['appends_per_s']} | {x['connections_opened']} |")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
