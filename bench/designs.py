"""The designs the seeds replaced versus ours, side by side on the SAME items: one real clean run of
bench/sweep.py (its JSON: the per-item completion timeline, jobs and tables), plus a few timings taken
here on the local stack.

    PYTHONPATH=$PWD .venv/bin/python bench/designs.py [--run bench/results/sweep-450-clean-...json]
                                                      [--state-dir DIR] [--merge-samples 5]

(a) Every worker MERGEs into the main table itself, versus one MERGE per batch. Each item is assumed
    to issue its own MERGE at its recorded completion time; the MERGE lasts what a single-item MERGE
    (5 rows, the production statement shape) lasts on the emulator, timed here. BigQuery's documented
    limit on mutating DML per table is applied: at most 2 statements run at once, up to 20 more wait,
    and any further statement fails ("Too many DML statements outstanding")
    https://cloud.google.com/bigquery/quotas#data-manipulation-language-statements
    The timeline is taken as measured (the emulator pushes 2 at a time) and compressed to production's
    20 instances x 5 concurrent requests (100 in flight: completions arrive 50x as fast).
(b) One batch document taking every completion, versus ours (one document per item, the batch
    document written a handful of times): writes per second on the hottest document, against
    Firestore's ~1 sustained write per second per document
    https://cloud.google.com/firestore/docs/best-practices#updates_to_a_single_document
(c) Per-item staging tables (05d660d) versus one batch table written through the Storage Write API
    (HEAD): tables created, load jobs, deletes per batch and BigQuery requests per item. Ours is COUNTED
    here on instrumented clients running batchline's own functions (gRPC AppendRows per item, REST
    requests of the completion check `staging.count_writes`, of dispatch and of consolidation) and taken
    from a clean run's BigQuery jobs (`bq_jobs`, `bq_jobs_consolidation`); the per-item design's figures
    are MEASURED on the old code: its sweep JSON of the same session (`--old-run`) and the HTTP count of
    05d660d's own bench/designs.py run on its own stack (`--old-designs`, a designs-old-*.json). Load
    jobs per day against the 100,000 per project per day quota https://cloud.google.com/bigquery/quotas#load_jobs

Writes bench/results/designs-<time>.json and bench/results/designs.md. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from common import RESULTS_DIR, loadavg, machine, r, read_results, stack, utc_now, write_json

DML_RUNNING = 2
DML_QUEUED = 20
PROD_INSTANCES, PROD_CONCURRENCY = 20, 5
LOCAL_PUSH_CONCURRENCY = 2  # the Pub/Sub emulator's concurrent pushes per subscription (issue 10)
FIRESTORE_DOC_WRITES_PER_S = 1.0
LOAD_JOBS_PER_DAY = 100_000
DML_URL = "https://cloud.google.com/bigquery/quotas#data-manipulation-language-statements"
LOAD_URL = "https://cloud.google.com/bigquery/quotas#load_jobs"
FS_URL = "https://cloud.google.com/firestore/docs/best-practices#updates_to_a_single_document"


# ------------------------------------------------------------------------------------------------
# (a) DML queue simulation
# ------------------------------------------------------------------------------------------------

def simulate_dml(arrivals: list[float], duration_s: float, running: int = DML_RUNNING,
                 queued: int = DML_QUEUED) -> dict:
    """Statements arrive at `arrivals` and each runs `duration_s` once started. At most `running` run,
    at most `queued` wait (FIFO); a statement arriving when both are full is rejected (lost unless the
    worker retries it; the seeds did not). Returns counts, peaks and the finish time."""
    ends: list[float] = []  # heap of running statements' end times
    waiting: list[float] = []  # arrival times of waiting statements, FIFO
    rejected = accepted = peak_q = 0
    finish = 0.0

    def drain(until: float) -> None:
        nonlocal finish
        while ends and ends[0] <= until:
            t = heapq.heappop(ends)
            finish = max(finish, t)
            if waiting:
                waiting.pop(0)
                heapq.heappush(ends, t + duration_s)

    for t in sorted(arrivals):
        drain(t)
        if len(ends) < running:
            heapq.heappush(ends, t + duration_s)
            accepted += 1
        elif len(waiting) < queued:
            waiting.append(t)
            accepted += 1
            peak_q = max(peak_q, len(waiting))
        else:
            rejected += 1
    drain(float("inf"))
    return {"statements": len(arrivals), "accepted": accepted, "rejected_items_lost": rejected,
            "peak_queued": peak_q, "last_statement_done_s": r(finish)}


def time_single_item_merge(clients, samples: int) -> dict:
    """A 5-row staging table MERGEd into a copy of the main table with the production statement
    (batchline.adapters.merge.merge_sql), `samples` times; the copy keeps the main table's rows."""
    from dataclasses import replace

    from google.cloud import bigquery

    from batchline.adapters.merge_sql import merge_params, merge_sql
    from batchline.local.provision import main_table_schema

    s = clients.settings
    tag = uuid.uuid4().hex[:8]
    copy = f"designs_main_copy_{tag}"
    t = bigquery.Table(f"{s.project}.{s.main_dataset}.{copy}", schema=main_table_schema())
    clients.bq.create_table(t)
    clients.bq.query(f"INSERT INTO `{s.project}.{s.main_dataset}.{copy}` SELECT * FROM `{s.main_table_id}`").result()
    s2 = replace(s, main_table=copy)
    schema = list(clients.bq.get_table(s2.main_table_id).schema)
    day = dt.date(2038, 1, 1)
    times = []
    try:
        for k in range(samples):
            batch_id = f"designs_{tag}_{k}"
            item = f"player_{k:04d}"
            stg = f"designs_stg_{tag}_{k}"
            now = dt.datetime.now(dt.UTC).isoformat()
            rows = [{"prediction_id": f"{tag}{k}s{j}", "game_date": day.isoformat(), "game_id": "g",
                     "player_lookup": item,
                     "system_id": f"s{j}", "prop_type": "points", "predicted_value": 1.0, "confidence": 0.5,
                     "line_value": None, "recommendation": "PASS", "batch_id": batch_id, "created_at": now,
                     "updated_at": now, "is_active": True} for j in range(5)]
            # the 5-row source (how it got there does not matter for the MERGE's duration)
            clients.bq.load_table_from_json(rows, s.staging_table_id(stg), job_config=bigquery.LoadJobConfig(
                schema=schema, write_disposition="WRITE_TRUNCATE")).result()
            cols = ", ".join(f"`{f.name}`" for f in schema)
            src = (f"SELECT {cols} FROM `{s.staging_table_id(stg)}` WHERE game_date = @game_date "
                   f"AND batch_id = @batch_id")
            t0 = time.monotonic()
            clients.bq.query(merge_sql(s2, schema, src, {f.name for f in schema}),
                             job_config=bigquery.QueryJobConfig(
                                 query_parameters=merge_params(batch_id, day, [item], [item]))).result()
            times.append(time.monotonic() - t0)
            clients.bq.delete_table(s.staging_table_id(stg), not_found_ok=True)
    finally:
        clients.bq.delete_table(s2.main_table_id, not_found_ok=True)
    return {"samples_s": [r(x) for x in times], "median_s": r(statistics.median(times)),
            "main_table_rows": list(clients.bq.query(f"SELECT COUNT(*) AS n FROM `{s.main_table_id}`")
                                    .result())[0]["n"]}


# ------------------------------------------------------------------------------------------------
# (c) Calls of the batch table design, counted on instrumented clients running the production code
# ------------------------------------------------------------------------------------------------

def _counting_bq(s, calls: Counter):
    """A BigQuery client whose HTTP session counts requests by kind (tables.get, jobs.query, ...)."""
    import requests
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    def hook(resp, *args, **kwargs):
        req = resp.request
        path = req.path_url.split("?")[0]
        kind = ("upload" if "/upload/" in path else "jobs.insert" if req.method == "POST" and path.endswith("/jobs")
                else "jobs.query" if req.method == "POST" and path.endswith("/queries")
                else "jobs.getQueryResults" if "/queries/" in path else "jobs.get" if "/jobs/" in path
                else "tables." + {"post": "insert"}.get(req.method.lower(), req.method.lower()))
        calls[kind] += 1

    session = requests.Session()
    session.hooks["response"].append(hook)
    return bigquery.Client(project=s.project, credentials=AnonymousCredentials(), _http=session,
                           client_options=ClientOptions(api_endpoint=f"http://{s.bigquery_emulator_host}"),
                           location=s.bq_location)


def count_batch_table_calls(clients, items: int = 20) -> dict:
    """What the batch table design sends to BigQuery, on instrumented clients running batchline's own
    functions: dispatch (`staging.create_batch_table`), each item's worker append
    (`write_api.StagingAppender.append` on a gRPC channel counting calls by method, after
    `staging.live_schema`, cached a minute per process), the coordinator's completion check per item
    (`staging.count_writes`), and consolidation (`staging.staged_writes` = the inventory,
    `consolidate.merge_staging` into an empty copy of the main table, `staging.drop_batch_table`)."""
    from dataclasses import replace

    import grpc
    from google.cloud import bigquery

    from batchline.adapters import merge as cons
    from batchline.adapters import staging
    from batchline.adapters.write_api import StagingAppender
    from batchline.domain import ids

    s = clients.settings
    rest: Counter = Counter()
    grpc_calls: Counter = Counter()

    class CountingInterceptor(grpc.StreamStreamClientInterceptor, grpc.UnaryUnaryClientInterceptor,
                              grpc.UnaryStreamClientInterceptor, grpc.StreamUnaryClientInterceptor):
        def _count(self, details):
            grpc_calls[details.method.rsplit("/", 1)[-1]] += 1

        def intercept_stream_stream(self, continuation, details, request_iterator):
            self._count(details)
            return continuation(details, request_iterator)

        def intercept_unary_unary(self, continuation, details, request):
            self._count(details)
            return continuation(details, request)

        def intercept_unary_stream(self, continuation, details, request):
            self._count(details)
            return continuation(details, request)

        def intercept_stream_unary(self, continuation, details, request_iterator):
            self._count(details)
            return continuation(details, request_iterator)

    from google.cloud import bigquery_storage_v1
    from google.cloud.bigquery_storage_v1.services.big_query_write import transports

    appender = StagingAppender(s)
    channel = grpc.intercept_channel(grpc.insecure_channel(s.bigquery_write_emulator_host), CountingInterceptor())
    appender._client = bigquery_storage_v1.BigQueryWriteClient(
        transport=transports.BigQueryWriteGrpcTransport(channel=channel))
    bq = _counting_bq(s, rest)
    day = dt.date(2038, 2, 1) + dt.timedelta(days=int(time.time()) % 1000)
    batch_id = ids.new_batch_id(day)
    tag = uuid.uuid4().hex[:8]
    copy = f"designs_calls_main_{tag}"
    main_schema = list(clients.bq.get_table(s.main_table_id).schema)
    t = bigquery.Table(f"{s.project}.{s.main_dataset}.{copy}", schema=main_schema)
    clients.bq.create_table(t)
    s_copy = replace(s, main_table=copy)
    out: dict = {}
    try:
        rest.clear()
        staging.create_batch_table(bq, s, batch_id)
        out["dispatch_per_batch"] = dict(rest)
        table_id = s.staging_table_id(ids.batch_staging_table(batch_id))
        staging._schema_cache.pop(table_id, None)  # cold: the first item of a worker process in a minute
        rest.clear()
        schema = staging.live_schema(bq, table_id)
        out["worker_schema_lookup_per_process_per_minute"] = dict(rest)
        manifest = {}
        worker_rest, worker_grpc, check_rest = Counter(), Counter(), Counter()
        now = dt.datetime.now(dt.UTC).isoformat()
        for k in range(items):
            item = f"player_{k:04d}"
            write_id = ids.new_write_id()
            rows = [{"prediction_id": f"{day}|{item}|s{j}", "game_date": day.isoformat(), "game_id": "g00",
                     "player_lookup": item, "system_id": f"s{j}", "prop_type": "points", "predicted_value": 1.0,
                     "confidence": 0.5, "line_value": None, "recommendation": "PASS", "batch_id": batch_id,
                     "created_at": now, "updated_at": now, "is_active": True,
                     staging.ITEM_COLUMN: item, staging.WRITE_COLUMN: write_id} for j in range(5)]
            rest.clear()
            grpc_calls.clear()
            schema = staging.live_schema(bq, table_id)  # warm cache, as for every later item
            appender.append(table_id, schema, rows)
            worker_rest.update(rest)
            worker_grpc.update(grpc_calls)
            rest.clear()
            n = staging.count_writes(bq, s, batch_id, [(item, write_id)])[(item, write_id)]
            assert n == 5, n
            check_rest.update(rest)
            manifest[item] = write_id
        out["worker_per_item"] = {"grpc": {k: v / items for k, v in worker_grpc.items()},
                                  "rest": {k: v / items for k, v in worker_rest.items()}}
        out["completion_check_per_item"] = {"rest": {k: v / items for k, v in check_rest.items()}}
        rest.clear()
        staged = staging.staged_writes(bq, s, batch_id)
        inv_calls = dict(rest)
        rest.clear()
        res = cons.merge_staging(bq, s_copy, batch_id, day, {i: next(iter(w)) for i, w in staged.items()},
                                 scheduled_items=sorted(manifest))
        merge_calls = dict(rest)
        rest.clear()
        dropped = staging.drop_batch_table(bq, s, batch_id)
        out["consolidation_per_batch"] = {"inventory": inv_calls, "merge_staging": merge_calls,
                                          "drop": dict(rest), "items": items, "merged_rows": res.verified_rows,
                                          "dropped": dropped}
        out["consolidation_requests_per_batch"] = sum(inv_calls.values()) + sum(merge_calls.values()) + sum(
            rest.values())
        out["items_counted"] = items
    finally:
        clients.bq.delete_table(s_copy.main_table_id, not_found_ok=True)
        clients.bq.delete_table(s.staging_table_id(ids.batch_staging_table(batch_id)), not_found_ok=True)
    return out


# ------------------------------------------------------------------------------------------------

def max_in_window(times: list[float], window: float = 1.0) -> int:
    ts = sorted(times)
    best = lo = 0
    for hi, t in enumerate(ts):
        while t - ts[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _load(path: str) -> dict:
    return {**json.loads(Path(path).read_text()), "_file": Path(path).name}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="a clean sweep JSON (default: newest clean 450-item run)")
    ap.add_argument("--state-dir", default=None)
    ap.add_argument("--merge-samples", type=int, default=5)
    ap.add_argument("--old-designs", default=None,
                    help="designs JSON written by 05d660d's bench/designs.py (its per-item HTTP count, measured "
                         "on the old code); default: newest designs-old-*.json in bench/results")
    ap.add_argument("--old-run", default=None,
                    help="a clean sweep JSON of the old design at the same size (default: newest old one)")
    args = ap.parse_args()
    if args.run:
        run = json.loads(Path(args.run).read_text())
        run["_file"] = Path(args.run).name
    else:
        runs = read_results("sweep-450-clean")
        if not runs:
            sys.exit("no clean 450-item sweep JSON in bench/results: run bench/sweep.py first")
        runs = [x for x in runs if x.get("design") == "batch table (Storage Write API)"] or runs
        run = runs[-1]
    n = run["size"]
    old_designs = _load(args.old_designs) if args.old_designs else (read_results("designs-old-") or [None])[-1]
    if args.old_run:
        old_run = _load(args.old_run)
    else:
        olds = [x for x in read_results(f"sweep-{n}-clean") if str(x.get("design", "")).startswith("per-item")]
        old_run = olds[-1] if olds else None
    offsets = run["completion_offsets_s"]
    before = loadavg()
    with stack(args.state_dir) as info:
        clients = info.activate()
        merge = time_single_item_merge(clients, args.merge_samples)
        calls = count_batch_table_calls(clients)
    d = merge["median_s"]
    speedup = (PROD_INSTANCES * PROD_CONCURRENCY) / LOCAL_PUSH_CONCURRENCY
    prod = [t / speedup for t in offsets]
    a = {
        "single_item_merge_s": merge,
        "per_item_merge_as_measured": simulate_dml(offsets, d),
        "per_item_merge_at_20x5": simulate_dml(prod, d),
        # the emulator's DML is fast on a small table; BigQuery's takes seconds: the same timeline at
        # assumed statement durations, to show how sensitive the loss is to it
        "sensitivity_at_20x5": {f"{x:g}s": simulate_dml(prod, x)["rejected_items_lost"] for x in (0.5, 1.0, 3.0)},
        "sensitivity_as_measured": {f"{x:g}s": simulate_dml(offsets, x)["rejected_items_lost"]
                                    for x in (0.5, 1.0, 3.0)},
        "timeline_compression": f"x{speedup:g} (100 in flight vs the emulator's {LOCAL_PUSH_CONCURRENCY})",
        "ours": {"statements": 1, "rejected_items_lost": 0, "merge_s": (run.get("merge_timings_s") or {}).get("merge")},
        "mutating_dml_on_main_table": {"per_item": n, "ours_measured": run["main_table_mutating_dml"]},
        "limit": f"{DML_RUNNING} running + {DML_QUEUED} queued per table, the rest rejected ({DML_URL})",
    }
    window = max(offsets) - min(offsets) if offsets else 0.0
    b = {
        "one_batch_doc": {"writes": n, "work_window_s": r(window),
                          "mean_writes_per_s": r(n / window if window else 0, 2),
                          "peak_writes_in_1s": max_in_window(offsets),
                          "peak_writes_in_1s_at_20x5": max_in_window(prod),
                          "mean_writes_per_s_at_20x5": r(n / (window / speedup) if window else 0, 2)},
        "ours": {"hottest_item_doc_writes": "<= 3 in the item's life (create, attempt count per delivery, "
                                            "completion); redeliveries add one attempt write each",
                 "max_attempts_on_one_item": run["items"]["attempts_max"],
                 "batch_doc_writes": "a handful per batch, independent of N: create, mark running, consolidation "
                                     "claim, lease take (+ renewals), merge_result, consolidated "
                                     "(counted from the code path, batchline/adapters/batch_store.py; not measured)"},
        "limit": f"~{FIRESTORE_DOC_WRITES_PER_S:g} sustained write/s per document ({FS_URL})",
    }
    jobs = run.get("bq_jobs", {})
    cons_jobs = run.get("bq_jobs_consolidation", {})
    old_calls = (old_designs or {}).get("c_staging", {}).get("http_requests_per_item_current")
    old_jobs = (old_run or {}).get("bq_jobs", {})
    per_day = []
    for items in (450, 10_000):
        for batches in (1, 4, 12, 24):
            jobs_day = items * batches
            per_day.append({"items_per_batch": items, "batches_per_day": batches, "load_jobs_per_day": jobs_day,
                            "pct_of_quota": r(100 * jobs_day / LOAD_JOBS_PER_DAY, 1),
                            "batch_table_load_jobs_per_day": 0})
    worker_grpc = sum(calls["worker_per_item"]["grpc"].values())
    worker_rest = sum(calls["worker_per_item"]["rest"].values())
    check_rest = sum(calls["completion_check_per_item"]["rest"].values())
    c = {
        "batch_table_measured_run": {
            "file": run["_file"], "items": n, "bq_jobs": jobs, "bq_jobs_during_consolidation": cons_jobs,
            "load_jobs": jobs.get("load", 0), "staging_tables_created": run.get("staging_tables_created"),
            "staging_tables_deleted": run.get("staging_tables_deleted"),
            "abandoned_writes": run.get("abandoned_writes"), "recovered_items": run.get("recovered_items")},
        "batch_table_calls_counted": calls,
        "per_item_tables_measured_run": None if old_run is None else {
            "file": old_run["_file"], "items": old_run["size"], "bq_jobs": old_jobs,
            "load_jobs": old_jobs.get("load"), "staging_tables_created": old_run.get("staging_tables_created"),
            "staging_tables_deleted": old_run.get("staging_tables_deleted"),
            "scratch_tables_created": old_run.get("scratch_tables_created")},
        "per_item_tables_http_per_item": old_calls,
        "per_item_tables_http_source": (old_designs or {}).get("_file"),
        "per_batch": {
            "per_item_tables": None if old_run is None else {
                "tables_created": old_run.get("staging_tables_created"), "load_jobs": old_jobs.get("load"),
                "table_deletes": old_run.get("staging_tables_deleted"),
                "bigquery_requests_per_item": (old_calls or {}).get("total_per_item"),
                "bigquery_requests": ((old_calls or {}).get("total_per_item") or 0) * n or None,
                "grpc_calls": 0},
            "batch_table": {"tables_created": run.get("staging_tables_created"), "load_jobs": jobs.get("load", 0),
                            "table_deletes": None if run.get("staging_tables_deleted") is None
                            else int(run["staging_tables_deleted"]),
                            "bigquery_requests_per_item": r(worker_rest + check_rest, 3),
                            "grpc_calls_per_item": worker_grpc,
                            "bigquery_requests": (f"{n} x {worker_grpc:g} AppendRows (gRPC) + {n} x {check_rest:g} "
                                                  f"REST (completion COUNT) + "
                                                  f"{calls['consolidation_requests_per_batch']}"
                                                  f" REST for consolidation + "
                                                  f"{sum(calls['dispatch_per_batch'].values())} at dispatch"),
                            "consolidation_statements": sum(cons_jobs.values()) if cons_jobs else None},
        },
        "load_jobs_per_day": per_day,
        "limit": f"{LOAD_JOBS_PER_DAY:,} load jobs per project per day ({LOAD_URL})",
    }
    out = {"kind": "designs", "at": utc_now(), "machine": machine(), "loadavg_before": before,
           "loadavg_after": loadavg(), "source_run": run["_file"], "items": n, "a_dml": a, "b_hot_document": b,
           "c_staging": c}
    path = write_json(f"designs-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json", out)
    md = render(out)
    (RESULTS_DIR / "designs.md").write_text(md)
    print(md)
    print("->", path.name)


def render(o: dict) -> str:
    a, b, c = o["a_dml"], o["b_hot_document"], o["c_staging"]
    n = o["items"]
    m, p = a["per_item_merge_as_measured"], a["per_item_merge_at_20x5"]
    one = b["one_batch_doc"]
    lines = [
        f"# Designs side by side ({n} items, run {o['source_run']}, {o['at']}, "
        f"load {o['loadavg_before'][0]}/{o['loadavg_after'][0]})",
        "",
        "## (a) Per-item MERGE vs one MERGE per batch",
        f"Single-item MERGE on the emulator: median {a['single_item_merge_s']['median_s']} s "
        f"(samples {a['single_item_merge_s']['samples_s']}). Limit: {a['limit']}.",
        "",
        "| design | mutating DML on main table | items lost (rejected) | peak queued | last statement done s |",
        "|---|---:|---:|---:|---:|",
        f"| every worker MERGEs, timeline as measured | {m['statements']} | {m['rejected_items_lost']} "
        f"| {m['peak_queued']} | {m['last_statement_done_s']} |",
        f"| every worker MERGEs, at 20 instances x 5 ({a['timeline_compression']}) | {p['statements']} "
        f"| {p['rejected_items_lost']} | {p['peak_queued']} | {p['last_statement_done_s']} |",
        f"| ours: one MERGE per batch (measured) | {a['mutating_dml_on_main_table']['ours_measured']} | 0 | 0 "
        f"| {a['ours']['merge_s']} (the MERGE) |",
        "",
        f"Items lost if a statement took 0.5 / 1 / 3 s (BigQuery DML usually takes seconds): as measured "
        f"{a['sensitivity_as_measured']}, at 20x5 {a['sensitivity_at_20x5']}.",
        "",
        "## (b) Hottest Firestore document",
        f"Limit: {b['limit']}.",
        "",
        "| design | writes to the hottest document | mean writes/s | peak writes in 1 s "
        "| at 20x5: mean/s, peak in 1 s |",
        "|---|---:|---:|---:|---:|",
        f"| one batch document takes every completion | {one['writes']} in {one['work_window_s']} s "
        f"| {one['mean_writes_per_s']} | {one['peak_writes_in_1s']} | {one['mean_writes_per_s_at_20x5']}, "
        f"{one['peak_writes_in_1s_at_20x5']} |",
        f"| ours: one document per item | <= 3 per item doc (max attempts on one item: "
        f"{b['ours']['max_attempts_on_one_item']}); batch doc ~6 per batch; each progress shard <= 50 per batch "
        f"(one shard per 50 items, written with the item's own commit) | < 1 (item), ~2-3 (shard) | <= 2 (item) "
        f"| shard: a burst of ~50 in the seconds a batch ends |",
        "",
        "## (c) Per-item staging tables (05d660d, measured) vs one batch table (HEAD, counted)",
        "",
        "Batch table, counted on instrumented clients running batchline's functions "
        f"({c['batch_table_calls_counted']['items_counted']} items): worker per item "
        f"{c['batch_table_calls_counted']['worker_per_item']} "
        f"(+ {c['batch_table_calls_counted']['worker_schema_lookup_per_process_per_minute']} "
        "per worker process per minute: the cached live schema); completion check per item "
        f"{c['batch_table_calls_counted']['completion_check_per_item']}; dispatch per batch "
        f"{c['batch_table_calls_counted']['dispatch_per_batch']}; consolidation per batch "
        f"{c['batch_table_calls_counted']['consolidation_per_batch']}.",
        "",
        f"Batch table, measured run {c['batch_table_measured_run']['file']}: BigQuery jobs "
        f"{c['batch_table_measured_run']['bq_jobs']}, of which during consolidation "
        f"{c['batch_table_measured_run']['bq_jobs_during_consolidation']}; abandoned writes "
        f"{c['batch_table_measured_run']['abandoned_writes']}, recovered items "
        f"{c['batch_table_measured_run']['recovered_items']}.",
        "",
    ]
    if c.get("per_item_tables_measured_run"):
        lines += [f"Per-item tables, measured run {c['per_item_tables_measured_run']['file']} (05d660d): BigQuery jobs "
                  f"{c['per_item_tables_measured_run']['bq_jobs']}; HTTP requests per item counted by 05d660d's "
                  f"bench/designs.py on its own code ({c.get('per_item_tables_http_source')}): "
                  f"{c.get('per_item_tables_http_per_item')}.", ""]
    lines += [
        "| per batch | tables created | load jobs | table deletes | REST requests per item | gRPC calls per item "
        "| BigQuery requests per batch |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, v in c["per_batch"].items():
        if not v:
            continue
        lines.append(f"| {name} | {v['tables_created']} | {v['load_jobs']} | {v['table_deletes']} "
                     f"| {v.get('bigquery_requests_per_item')} | {v.get('grpc_calls_per_item', v.get('grpc_calls'))} "
                     f"| {v['bigquery_requests']} |")
    lines += ["", f"Load jobs per day, {c['limit']}:", "",
              "| items/batch | batches/day | per-item tables: load jobs/day | % of quota | batch table |",
              "|---:|---:|---:|---:|---:|"]
    for x in c["load_jobs_per_day"]:
        lines.append(f"| {x['items_per_batch']:,} | {x['batches_per_day']} | {x['load_jobs_per_day']:,} "
                     f"| {x['pct_of_quota']}% | 0 |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
