"""The seeds' designs priced beside ours, MODELLED from counted call patterns (not run here), and the
quota headroom of each at a production pace.

(a) per-item MERGE: every worker MERGEs its own rows into the main table (source in query parameters,
    matched on prediction_id). Per item: one mutating DML job (jobs.insert + 2 jobs.getQueryResults, the
    counted pattern of one query job) billed on the target columns it matches over the partitions it
    scans plus the date partition it updates, at least 10 MB; no staging, no completion query, no
    consolidation MERGE. Firestore, Pub/Sub and functions as counted for ours; each worker request
    waits for its MERGE (`dml_s`), the coordinator for no query while it records a completion.
(b) per-item staging tables + one UNION MERGE (05d660d; its requests per item were measured on that
    code: bench/results/designs.md, 8 REST requests per item). Per item: a load job (free), a COUNT of
    its own table (a query, 10 MB minimum, which its completion waits for), 2 tables.get and a delete at
    consolidation; past 500 items a CREATE TABLE AS SELECT per 500 tables, each billed 10 MB per table it
    references; one MERGE reading every (chunk) table at 10 MB minimum each plus the main table as ours;
    the same verification.

Ours is what was counted, whatever its design: since issue 15 a completion is recorded without a query
and the claims are verified by one query per batch; a counted run of the earlier design (a COUNT per
completion) is modelled by the same code (`--baseline`), its completion queries being counted too.

Production pace (`pace`): `in_flight` = worker max_instances x concurrency requests at once, each
`item_s` long, and the coordinator's max_instances x concurrency completions at once, each its counted
time plus `bq_latency_s` for every query a completion sent (counted on the completion routes); the
slower of the two sets how long a batch of N works.
"""

from __future__ import annotations

import math

from cost_model import billed_query_bytes, firestore_usd, memory_gib, on_demand_usd, pubsub_usd, run_usd
from cost_prices import QUOTAS, quota
from designs import simulate_dml

CHUNK = 500  # 05d660d's MAX_TABLES_PER_STATEMENT
SHARD_ITEMS = 50  # batchline/domain/progress.py


def pace(items: int, p: dict, caps: dict, check_s: float | None = None) -> dict:
    """Completions per second and the work phase of a batch at the production caps: workers finish
    `in_flight / item_s` items a second, the coordinator records `coord_cap / completion_s` (each
    completion waiting `check_s` for BigQuery: by default `bq_latency_s` per query a completion sent in
    the counted run, `completion_queries`); the slower one sets the pace."""
    in_flight = caps["worker"]["max_instances"] * caps["worker"]["concurrency"]
    coord_cap = caps["coordinator"]["max_instances"] * caps["coordinator"]["concurrency"]
    if check_s is None:
        check_s = p.get("completion_queries", 1.0) * p["bq_latency_s"]
    completion_s = p["completion_s"] + check_s
    worker_rate, coord_rate = in_flight / p["item_s"], coord_cap / completion_s
    rate = min(worker_rate, coord_rate)
    return {"in_flight": in_flight, "item_s": p["item_s"], "completion_s": completion_s,
            "worker_items_per_s": worker_rate, "coordinator_completions_per_s": coord_rate,
            "completions_per_s": rate, "bottleneck": "coordinator" if coord_rate < worker_rate else "worker",
            "work_s": max(p["item_s"], items / rate)}


def per_item_merge_bytes(items: int, rows_per_item: float, tables, pruned: bool) -> float:
    """Bytes billed for N single-item MERGEs into the main table, the k-th finding k items' rows of the
    date already merged (the partition it updates) and, unpruned, every earlier date too."""
    on_bytes = tables.row_bytes("main", ["prediction_id"] + (["game_date"] if pruned else []))
    row = tables.row_bytes("main")
    history = tables.total_rows["main"] - tables.partition_rows["main"]
    total = 0.0
    for k in range(items):
        part = k * rows_per_item
        scanned = on_bytes * (part if pruned else history + part)
        total += billed_query_bytes({"main": scanned + part * row})
    return total


def _fn_usd(caps: dict, seconds: dict[str, float], requests: dict[str, float]) -> float:
    return sum(run_usd(float(caps[fn]["cpu"]) * s, memory_gib(caps[fn]["memory"]) * s, requests.get(fn, 0.0))
               for fn, s in seconds.items())


def modelled_designs(items: int, ours: dict, tables, caps: dict, p: dict) -> dict:
    """Dollars and calls per batch of designs (a) and (b) at `items`, from ours (`ours`: the dollars
    lines, API calls and statement classes of our design at that size)."""
    r = p["rows_per_item"]
    fs, ps = ours["dollars"]["firestore"], ours["dollars"]["pubsub"]
    shared_usd = firestore_usd(fs["reads"], fs["writes"], fs["deletes"]) + pubsub_usd(ps["billable_bytes"])
    fns = ours["dollars"]["cloud_run_functions"]["by_function"]
    seconds = {fn: v["modelled_s"] for fn, v in fns.items()}
    requests = {fn: v["requests"] for fn, v in fns.items()}
    check_queries = ours["counts"]["completion_queries"]  # what the coordinator's completions waited for
    verify = [c for c in ours["statements"] if c["caller"] in ("consolidate.merge_staging", "consolidate.query_one",
                                                               "coordinator._kept_previous")
              and c["kind"] == "SELECT"]
    verify_bytes = sum(c["billed_bytes"] for c in verify if "staging" not in c["pruned"])
    # (a) every worker MERGEs
    a_bytes = per_item_merge_bytes(items, r, tables, p["pruned_merge"])
    a_sec = {**seconds, "worker": seconds["worker"] + items * p["dml_s"],
             "coordinator": max(0.0, seconds["coordinator"] - check_queries * p["bq_latency_s"])}
    a_rest = ours["api"]["bigquery_rest"] - check_queries + 3 * items
    a = {"bigquery_queries_usd": on_demand_usd(a_bytes), "billed_bytes": a_bytes, "statements": items,
         "mutating_dml": items, "storage_write_api_usd": 0.0, "functions_usd": _fn_usd(caps, a_sec, requests),
         "shared_usd": shared_usd, "bigquery_rest": a_rest,
         "api_calls": ours["api"]["total"] - ours["counts"]["append_rows"] - check_queries + 3 * items}
    a["total_usd"] = a["bigquery_queries_usd"] + a["functions_usd"] + shared_usd
    # (b) per-item staging tables (05d660d)
    chunks = math.ceil(items / CHUNK) if items > CHUNK else 0
    ten_mb = billed_query_bytes({"t": 0.0})
    merge_sources = chunks or items
    merge_target = next((c["billed_bytes"] / max(1, c["n"]) for c in ours["statements"] if c["kind"] == "MERGE"), 0.0)
    b_bytes = (items * ten_mb + chunks * CHUNK * ten_mb + merge_sources * ten_mb + merge_target + verify_bytes)
    b_sec = {**seconds, "worker": seconds["worker"] + items * p["load_job_s"],
             "coordinator": max(0.0, seconds["coordinator"] - check_queries * p["bq_latency_s"])
             + items * p["bq_latency_s"]}  # its COUNT per completion
    b_rest = 8 * items + 12
    b = {"bigquery_queries_usd": on_demand_usd(b_bytes), "billed_bytes": b_bytes,
         "statements": items + chunks + 1 + len(verify), "load_jobs": items, "tables_created": items + chunks,
         "mutating_dml": 1, "storage_write_api_usd": 0.0, "functions_usd": _fn_usd(caps, b_sec, requests),
         "shared_usd": shared_usd, "bigquery_rest": b_rest,
         "api_calls": ours["api"]["total"] - ours["api"]["bigquery_rest"] - ours["counts"]["append_rows"] + b_rest}
    b["total_usd"] = b["bigquery_queries_usd"] + b["functions_usd"] + shared_usd
    return {"a_per_item_merge": a, "b_per_item_tables": b}


def _row(name: str, key: str, use: float, basis: str, limit: float | None = None) -> dict:
    lim = quota(key) if limit is None else limit
    return {"quota": name, "limit": lim, "use": round(use, 3), "headroom_x": round(lim / use, 2) if use else None,
            "basis": basis, "source": QUOTAS[key].source, "url": QUOTAS[key].url}


def _shared_rows(items: int, ours: dict, w: float) -> list[dict]:
    """Quotas every design shares (the Firestore and Pub/Sub pattern is ours in all three), over its
    work phase of `w` seconds."""
    fs_writes = ours["dollars"]["firestore"]["writes"]
    # one shard holds every item up to 50; past that items hash to shards unevenly (the counted ratio)
    shard = items if items <= SHARD_ITEMS else round(SHARD_ITEMS * ours.get("hottest_shard_ratio", 1.0))
    return [
        _row("Firestore sustained writes per document (hottest: a progress shard)", "fs_doc_writes_per_s",
             shard / w, f"{shard} writes over the {w:.1f} s work phase"),
        _row("Firestore writes per second per database", "fs_db_writes_per_s", fs_writes / w,
             f"{fs_writes:.0f} writes over {w:.1f} s"),
        _row("Pub/Sub publisher throughput, bytes/s (us-central1)", "ps_publish_bps",
             ours["dollars"]["pubsub"]["publish_billable_bytes"] / w, "billed publish bytes over the work phase"),
    ]


def headroom(items: int, ours: dict, caps: dict, p: dict) -> dict[str, list[dict]]:
    """Per design, each quota the batch touches: the limit, the use at the production pace, the ratio."""
    pc = pace(items, p, caps)
    w, in_flight = pc["work_s"], pc["in_flight"]
    coord_cap = caps["coordinator"]["max_instances"] * caps["coordinator"]["concurrency"]
    completion_s = pc["completion_s"]
    demand = pc["worker_items_per_s"] * completion_s
    common = _shared_rows(items, ours, w)
    q = p.get("completion_queries", 1.0)
    ours_rows = [
        _row("BigQuery interactive queries queued or running", "bq_interactive_queue", max(1.0, coord_cap * q),
             f"{q:.4f} queries per completion (counted on the completion routes) x {coord_cap} completions in "
             "flight, at least 1: the consolidation's statements run one after another"),
        _row("Mutating DML per table (2 running + 20 queued)", "bq_mutating_dml_queued", 1, "one MERGE per batch",
             limit=quota("bq_mutating_dml_running") + quota("bq_mutating_dml_queued")),
        _row("Storage Write API concurrent connections", "bq_write_connections",
             caps["worker"]["max_instances"] + caps["coordinator"]["max_instances"],
             "one shared AppendRows connection per instance (batchline/adapters/write_stream.py): the workers' staged "
             "rows and the coordinators' manifest rows"),
        _row("Storage Write API throughput, bytes/s", "bq_write_throughput_bps",
             pc["completions_per_s"] * p["rows_per_item"] * p["staging_row_bytes"], "staged bytes per second"),
        {"quota": "Coordinator requests in flight (max_instances x concurrency)", "limit": coord_cap,
         "use": round(demand, 1), "headroom_x": round(coord_cap / demand, 2),
         "basis": f"workers finish {pc['worker_items_per_s']:.0f} items/s, each completion takes "
                  f"{completion_s:.2f} s (incl. {q:.4f} queries x {p['bq_latency_s']:g} s): the "
                  f"{pc['bottleneck']} sets the pace, {pc['completions_per_s']:.0f} completions/s",
         "source": "config",
         "url": "Pulumi.prod.yaml"},
        *common,
    ]
    pa = pace(items, {**p, "item_s": p["item_s"] + p["dml_s"]}, caps, check_s=0.0)
    pb = pace(items, {**p, "item_s": p["item_s"] + p["load_job_s"]}, caps, check_s=p["bq_latency_s"])
    sim = simulate_dml([k * pa["item_s"] / in_flight for k in range(items)], p["dml_s"])
    a_rows = [
        _row("Mutating DML per table (2 running + 20 queued)", "bq_mutating_dml_queued", min(items, in_flight),
             f"{items} MERGEs arriving {in_flight} at a time, {p['dml_s']:g} s each: "
             f"{sim['rejected_items_lost']} rejected", limit=quota("bq_mutating_dml_running")
             + quota("bq_mutating_dml_queued")),
        _row("BigQuery interactive queries queued or running", "bq_interactive_queue", min(items, in_flight),
             "one DML per worker request in flight"), *_shared_rows(items, ours, pa["work_s"])]
    b_rows = [
        _row("Load jobs per project per day", "bq_load_jobs_day", items * p["batches_per_day"],
             f"{items} per batch x {p['batches_per_day']} batch(es) a day"),
        _row("Tables referenced per query", "bq_tables_per_query", min(items, CHUNK),
             "chunked at 500 past 500 items"),
        _row("BigQuery interactive queries queued or running", "bq_interactive_queue",
             min(items, caps["coordinator"]["max_instances"] * caps["coordinator"]["concurrency"]),
             "one COUNT per completion in flight (05d660d checked each completion with its own query)"),
        *_shared_rows(items, ours, pb["work_s"])]
    return {"pace": pc, "pace_a": pa, "pace_b": pb, "ours": ours_rows, "a_per_item_merge": a_rows,
            "b_per_item_tables": b_rows, "a_dml_simulation": sim}
