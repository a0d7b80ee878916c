"""Counted runs -> a batch of any size, and a batch's usage -> US dollars.

Every counted figure of the runs (per-service counts, executions of each statement class) is fitted as
a + b * items over the sizes that ran (least squares; one size: proportional); a size that ran keeps its
counted figures. Bytes are not fitted: they are recomputed at each size from the statement counts and the
tables at that size (bench/cost_usage.statement_cost), so the 10 MB minimums bite where they do.
"""

from __future__ import annotations

import math

import cost_usage
from cost_model import (
    GIB,
    firestore_usd,
    growing_table_fills,
    memory_gib,
    on_demand_usd,
    pubsub_usd,
    run_usd,
    storage_usd,
    write_api_usd,
)

from batchline.domain.schema import MANIFEST_RETENTION_DAYS, MANIFEST_TABLE


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(a, b) of y = a + b x by least squares over two sizes or more. From one size only: a figure small
    against the size (at most 3, or 5% of it) is taken as fixed per batch, any other as proportional."""
    xs = {x for x, _ in points}
    if len(xs) < 2:
        x, y = points[0]
        if y <= max(3.0, 0.05 * x):
            return y, 0.0
        return 0.0, (y / x if x else 0.0)
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - b * mx, b


def flatten(d: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def unflatten(flat: dict[str, float]) -> dict:
    out: dict = {}
    for key, v in flat.items():
        node = out
        parts = key.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def at_size(runs: list[dict], items: int) -> tuple[dict, list[dict], str]:
    """(usage per process, statement classes, "counted" | "extrapolated") for a batch of `items`."""
    for r in runs:
        if r["items"] == items:
            return r["usage"], r["statements"], "counted"
    flats = [(r["items"], flatten(r["usage"])) for r in runs]
    keys = set().union(*(f.keys() for _, f in flats))
    usage_flat = {}
    for k in keys:
        a, b = linear_fit([(n, f.get(k, 0.0)) for n, f in flats])
        usage_flat[k] = max(0.0, a + b * items)
    classes: dict[tuple, dict] = {}
    for r in runs:
        for c in r["statements"]:
            classes.setdefault((c["process"], c["caller"], c["shape"]), {**c, "points": []})["points"].append(
                (r["items"], c["n"]))
    stmts = []
    for c in classes.values():
        pts = c.pop("points")
        seen = {n for n, _ in pts}
        pts += [(r["items"], 0) for r in runs if r["items"] not in seen]
        a, b = linear_fit(pts)
        stmts.append({**c, "n": max(0, round(a + b * items)), "fitted": [round(a, 3), round(b, 6)]})
    return unflatten(usage_flat), stmts, "extrapolated"


def tables_at(base: cost_usage.Tables, items: int, rows_per_item: float, history_days: int,
              rerun: bool = False, manifest_rows_per_item: float = 0.0) -> cost_usage.Tables:
    """The tables a batch of `items` reads: the date partitions, the staging table and the batch's pin
    of the manifest table grow with it; the whole main and context tables hold `history_days` earlier
    dates of the same size, the manifest table the pins of as many batches as its retention keeps."""
    part = {"main": items * rows_per_item, "context": float(items), "staging": items * rows_per_item,
            "manifest": items * manifest_rows_per_item}
    total = {k: v * (history_days + 1) for k, v in part.items()}
    total["manifest"] = part["manifest"] * min(history_days + 1, MANIFEST_RETENTION_DAYS)
    return cost_usage.Tables(base.main_id, base.context_id, base.staging_dataset, base.col_bytes, part, total,
                             merge_updates_rows=part["main"] if rerun else 0.0, manifest_id=base.manifest_id,
                             manifest_scan=base.manifest_scan)


def statement_bytes(stmts: list[dict], tables: cost_usage.Tables) -> list[dict]:
    """Each class's billed bytes at these tables: classes that ran while the staging table filled (mean
    fill < 0.9) spread evenly over its growth, the others against the full table."""
    out = []
    for c in stmts:
        n = int(c["n"])
        fill = c.get("mean_staging_fill")
        fills = growing_table_fills(n) if fill is not None and fill < 0.9 else [1.0] * n
        billed = processed = 0.0
        cache: dict[float, cost_usage.StatementCost] = {}
        for f in fills:
            key = round(f, 4)
            sc = cache.get(key) or cache.setdefault(key, cost_usage.statement_cost(c["sql"], tables, f))
            billed += sc.billed
            processed += sum(sc.per_table.values())
        out.append({**c, "billed_bytes": billed, "processed_bytes": processed})
    return out


def function_seconds(usage: dict, fn: str, bq_latency_s: float) -> dict:
    """A function's billed request seconds: counted (each request rounded up to 100 ms, as if it had its
    instance alone: the upper bound) and modelled for BigQuery (+ `bq_latency_s` per query the
    function's processes sent, the emulator answering in milliseconds)."""
    u = usage.get(fn, {})
    queries = sum((u.get("bigquery", {}).get("jobs") or {}).values())
    counted = u.get("billable_s", 0.0)
    return {"requests": u.get("invocations_total", 0.0), "counted_s": counted, "busy_s": u.get("busy_s", 0.0),
            "queries": queries, "modelled_s": counted + queries * bq_latency_s}


def appended_rows(usage: dict) -> dict[str, float]:
    """Rows appended through the Storage Write API per destination ("staging", "batchline_manifests"),
    summed over processes; a run counted before destinations were (every row then went to staging)."""
    out: dict[str, float] = {}
    for u in usage.values():
        by_table = u.get("write_api_by_table") or {}
        if by_table:
            for kind, v in by_table.items():
                out[kind] = out.get(kind, 0.0) + v.get("rows", 0.0)
        elif u.get("write_api", {}).get("rows"):
            out["staging"] = out.get("staging", 0.0) + u["write_api"]["rows"]
    return out


def completion_queries(usage: dict, stmts: list[dict]) -> float:
    """BigQuery queries the coordinator sent while serving completions (both routes), counted per route
    by the shim; for a run counted before that, its completion checks (`staging.count_writes`)."""
    routes = ("POST /completions", "POST /dead-letters/completions")
    counted = [u.get("invocations", {}).get(r, {}) for u in usage.values() for r in routes]
    if any("queries" in inv for inv in counted):
        return sum(inv.get("queries", 0.0) for inv in counted)
    return float(sum(c["n"] for c in stmts if c["caller"] == "staging.count_writes"))


def dollars(usage: dict, stmts: list[dict], tables: cost_usage.Tables, caps: dict, *, bq_latency_s: float,
            staging_lifetime_s: float, row_bytes: dict[str, float]) -> dict:
    """US dollars of one batch per service (list prices, no free tier), with the quantities priced. The
    manifest rows of its pin are stored for the manifest table's retention (at the active-storage price:
    an upper bound, partitions untouched for 90 days cost less)."""
    billed = sum(c["billed_bytes"] for c in stmts)
    fs = {k: sum(u.get("firestore", {}).get(k, 0.0) for u in usage.values()) for k in ("reads", "writes", "deletes")}
    ps = {k: sum(u.get("pubsub", {}).get(k, 0.0) for u in usage.values())
          for k in ("publish_billable_bytes", "delivery_billable_bytes", "publish_requests", "deliveries")}
    appended = appended_rows(usage)
    rows = sum(appended.values())
    manifest_rows = appended.get(MANIFEST_TABLE, 0.0)
    manifest_bytes = manifest_rows * row_bytes.get("manifest", 0.0)
    ingested = (rows - manifest_rows) * row_bytes.get("staging", 0.0) + manifest_bytes
    staging_bytes = tables.partition_rows.get("staging", 0.0) * row_bytes.get("staging", 0.0)
    kept_s = MANIFEST_RETENTION_DAYS * 86_400.0
    fn_lines = {}
    run_total = 0.0
    for fn, cap in caps.items():
        s = function_seconds(usage, fn, bq_latency_s)
        gib, cpu = memory_gib(cap["memory"]), float(cap["cpu"])
        usd = run_usd(cpu * s["modelled_s"], gib * s["modelled_s"], s["requests"])
        fn_lines[fn] = {**{k: round(v, 3) for k, v in s.items()}, "memory_gib": gib, "cpu": cpu,
                        "gib_s": round(gib * s["modelled_s"], 2), "usd": usd,
                        "usd_counted_only": run_usd(cpu * s["counted_s"], gib * s["counted_s"], s["requests"])}
        run_total += usd
    lines = {
        "bigquery_queries": {"billed_bytes": billed, "statements": sum(c["n"] for c in stmts),
                             "usd": on_demand_usd(billed)},
        "storage_write_api": {"rows": rows, "manifest_rows": manifest_rows, "logical_bytes": ingested,
                              "usd": write_api_usd(ingested)},
        "bigquery_storage": {"staging_bytes": staging_bytes, "seconds": staging_lifetime_s,
                             "usd": storage_usd(staging_bytes, staging_lifetime_s)},
        "manifest_storage": {"bytes": manifest_bytes, "seconds": kept_s if manifest_rows else 0.0,
                             "usd": storage_usd(manifest_bytes, kept_s) if manifest_rows else 0.0},
        "firestore": {**fs, "usd": firestore_usd(fs["reads"], fs["writes"], fs["deletes"])},
        "pubsub": {**ps, "billable_bytes": ps["publish_billable_bytes"] + ps["delivery_billable_bytes"],
                   "usd": pubsub_usd(ps["publish_billable_bytes"] + ps["delivery_billable_bytes"])},
        "cloud_run_functions": {"by_function": fn_lines, "usd": run_total},
    }
    lines["total_usd"] = sum(v["usd"] for v in lines.values() if isinstance(v, dict))
    return lines


def api_calls(usage: dict) -> dict:
    """Requests our code sends to Google APIs in a batch: BigQuery REST, gRPC (Firestore, Pub/Sub, Storage
    Write API), and the push deliveries Pub/Sub makes to the functions."""
    rest = sum(u.get("bigquery", {}).get("rest_total", 0.0) for u in usage.values())
    grpc_n = sum(u.get("grpc_total", 0.0) for u in usage.values())
    pushes = sum(u.get("pubsub", {}).get("deliveries", 0.0) for u in usage.values())
    return {"bigquery_rest": rest, "grpc": grpc_n, "push_deliveries": pushes, "total": rest + grpc_n + pushes}


def gib(nbytes: float) -> float:
    return nbytes / GIB


def ceil_div(a: float, b: float) -> int:
    return int(math.ceil(a / b))
