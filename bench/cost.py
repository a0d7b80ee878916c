"""The cost and quota model of a batch (issue 15): COUNT every call a real batch makes on the local
stack, then price it with Google's published prices and set it against each quota it touches.

    PYTHONPATH=$PWD .venv/bin/python bench/cost.py --sizes 50 450 2000 [--state-dir DIR]
    PYTHONPATH=$PWD .venv/bin/python bench/cost.py --sizes 450 10000 50000 --allow-big   # the final code
    PYTHONPATH=$PWD .venv/bin/python bench/cost.py --report-only [--json bench/results/cost-....json] \\
        [--baseline bench/results/cost-20261206T204728.json]              # + the per-completion COUNT design

Per size: the three functions are restarted with the counting shim (bench/cost_counting.py: BigQuery REST,
gRPC to Firestore / Pub/Sub / the Storage Write API, the function's own requests), one batch runs end to
end (bench/sweep.py's run: POST /start, real pushes, until the batch is terminal), then one stall check
and one reconcile of the date (the daily jobs). Counts are per process and per phase. Then, for 450,
10,000, 50,000 and 100,000 items (sizes that did not run are extrapolated from those that did,
bench/cost_scale.py): calls, bytes and US dollars per service, quota headroom at the production pace,
and the seeds' designs modelled side by side (bench/cost_designs.py). Writes
bench/results/cost-<time>.json, cost.md and cost.png. Figures, not assertions; docs/cost.md cites the prices.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import cost_stack
import cost_usage
import requests
from common import RESULTS_DIR, loadavg, machine, stack, utc_now, wait_quiet, write_json

from batchline.domain import schema
from batchline.local.provision import seed_context, synthetic_context

REPORT_SIZES = [450, 10_000, 50_000, 100_000]
BIG = 10_000
STAGING_EXTRA = {"staging_item_id": "STRING", "staging_write_id": "STRING"}


def _types(columns) -> dict[str, str]:
    return {c.name: c.type for c in columns}


def column_bytes(clients, day: dt.date, batch_id: str) -> dict[str, dict[str, float]]:
    """Mean logical bytes per value of every column of the main, staging, context and manifest tables,
    from the batch's own rows (the staging row = the main row + its item id and a 32-character write id;
    the manifest rows: the batch's pins)."""
    from cost_model import mean_column_bytes
    from google.cloud import bigquery

    s = clients.settings
    p = [bigquery.ScalarQueryParameter("d", "DATE", day), bigquery.ScalarQueryParameter("b", "STRING", batch_id)]
    main_rows = [dict(r.items()) for r in clients.bq.query(
        f"SELECT * FROM `{s.main_table_id}` WHERE game_date = @d AND batch_id = @b LIMIT 5000",
        job_config=bigquery.QueryJobConfig(query_parameters=p)).result()]
    ctx_rows = [dict(r.items()) for r in clients.bq.query(
        f"SELECT * FROM `{s.context_table_id}` WHERE game_date = @d LIMIT 5000",
        job_config=bigquery.QueryJobConfig(query_parameters=p[:1])).result()]
    pin_rows = [dict(r.items()) for r in clients.bq.query(
        f"SELECT * FROM `{s.manifest_table_id}` WHERE manifest_batch_id = @b LIMIT 10000",
        job_config=bigquery.QueryJobConfig(query_parameters=p[1:])).result()]
    main_types = _types(schema.MAIN_TABLE_COLUMNS)
    staged = [{**r, "staging_item_id": r["player_lookup"], "staging_write_id": "0" * 32} for r in main_rows]
    return {"main": mean_column_bytes(main_rows, main_types),
            "staging": mean_column_bytes(staged, {**main_types, **STAGING_EXTRA}),
            "context": mean_column_bytes(ctx_rows, _types(schema.CONTEXT_TABLE_COLUMNS)),
            "manifest": mean_column_bytes(pin_rows, _types(schema.MANIFEST_TABLE_COLUMNS))}


def _phase(count_dir: Path, before: dict, t0: float) -> tuple[dict, dict, float]:
    snaps = cost_stack.by_process(cost_stack.settle(count_dir))
    t1 = time.time()
    return cost_stack.diff(snaps, before, t0, t1), snaps, t1


def _phase_record(procs: dict, events: list[dict], tables) -> dict:
    return {"usage": {name: cost_usage.process_usage(p["counts"]) for name, p in procs.items()},
            "statements": cost_usage.statements_table(procs, events, tables),
            "doc_templates": {name: p["doc_templates"] for name, p in procs.items()}}


def _queries_by_route(procs: dict) -> dict[str, float]:
    """BigQuery queries per (process, route) the batch sent: where the O(1)-per-batch claim is checked."""
    out: dict[str, float] = {}
    for name, p in procs.items():
        for route, v in cost_usage.process_usage(p["counts"])["invocations"].items():
            if v.get("queries"):
                out[f"{name} {route}"] = v["queries"]
    return out


def counted_run(info, clients, day: dt.date, size: int, work_dir: Path, history_days: int, timeout: float,
                manifest_scan: str = "pin") -> dict:
    """One batch of `size` with every function process counting, then a stall check and a reconcile."""
    import cost_scale
    from sweep import batchline_source, one_run

    count_dir = work_dir / f"counts-{size}-{int(time.time())}"
    cost_stack.restart_functions(info, count_dir)
    seed_context(clients.bq, clients.settings, day, synthetic_context(day, size))
    before = cost_stack.by_process(cost_stack.settle(count_dir))
    t0 = time.time()
    run = one_run(info, clients, day, size, None, timeout)
    batch, after_batch, t1 = _phase(count_dir, before, t0)
    coordinator, reconcile = info.url("coordinator"), info.url("reconcile")
    requests.post(coordinator + "/stall-check", json={}, timeout=300)
    stall, after_stall, t2 = _phase(count_dir, after_batch, t1)
    requests.post(reconcile + "/", json={"game_date": day.isoformat()}, timeout=600)
    rec, _, t3 = _phase(count_dir, after_stall, t2)
    col_bytes = column_bytes(clients, day, run["batch_id"])
    appended = cost_scale.appended_rows({n: cost_usage.process_usage(p["counts"]) for n, p in batch.items()})
    s = clients.settings
    base = cost_usage.Tables(s.main_table_id, s.context_table_id, s.staging_dataset, col_bytes, {}, {},
                             manifest_id=s.manifest_table_id, manifest_scan=manifest_scan)
    rows_per_item = appended.get("staging", 0.0) / size if size else 0.0
    manifest_rows_per_item = appended.get(schema.MANIFEST_TABLE, 0.0) / size if size else 0.0
    tables = cost_scale.tables_at(base, size, rows_per_item, history_days,
                                  manifest_rows_per_item=manifest_rows_per_item)
    events = cost_stack.read_events(count_dir, t0, t1)
    merged_hot: dict[str, list[float]] = {}
    for p in batch.values():
        for doc, ts in p["hot_docs"].items():
            merged_hot.setdefault(doc, []).extend(ts)
    out = {"items": size, "count_dir": str(count_dir), "batch_id": run["batch_id"], "game_date": day.isoformat(),
           "batchline_source": batchline_source(), "bq_jobs_consolidation": run.get("bq_jobs_consolidation"),
           "wall_s": run["wall_s"], "status": run["status"], "ledger": run["ledger"],
           "main_table_mutating_dml": run["main_table_mutating_dml"], "bq_jobs_listed": run["bq_jobs"],
           "loadavg_before": run["loadavg_before"], "loadavg_after": run["loadavg_after"],
           "col_bytes": col_bytes, "rows_per_item": rows_per_item, "manifest_rows_per_item": manifest_rows_per_item,
           "table_ids": {"main": base.main_id, "context": base.context_id, "staging_dataset": base.staging_dataset,
                         "manifest": base.manifest_id},
           "queries_by_route": _queries_by_route(batch),
           "row_bytes": {k: sum(v.values()) for k, v in col_bytes.items()},
           **_phase_record(batch, events, tables),
           "hot_docs": cost_usage.peak_doc_writes(merged_hot),
           "peaks": {name: p["peaks"] for name, p in batch.items()},
           "daily": {"stall_check": _phase_record(stall, cost_stack.read_events(count_dir, t1, t2), tables),
                     "reconcile": _phase_record(rec, cost_stack.read_events(count_dir, t2, t3), tables)},
           "phase_times": [t0, t1, t2, t3]}
    print(json.dumps({k: out[k] for k in ("items", "wall_s", "status", "main_table_mutating_dml", "rows_per_item",
                                          "manifest_rows_per_item", "queries_by_route")}), flush=True)
    return out


def measure(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="batchline-cost-"))
    runs = []
    with stack(args.state_dir, args.threads) as info:
        clients = info.activate()
        day = dt.date(2042, 1, 1) + dt.timedelta(days=int(time.time()) % 20_000)
        try:
            for size in args.sizes:
                waited = {} if args.no_wait else wait_quiet()
                run = counted_run(info, clients, day, size, work, args.history_days, args.timeout,
                                  args.manifest_scan)
                run["wait_quiet"] = waited
                runs.append(run)
                day += dt.timedelta(days=1)
        finally:
            cost_stack.restart_functions(info, None)  # leave the stack as it was: no shim
    return {"kind": "cost", "at": utc_now(), "machine": machine(), "loadavg": loadavg(), "runs": runs,
            "params": {k: v for k, v in vars(args).items() if k not in ("report_only", "json")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 450, 2000], help="batch sizes to RUN and count")
    ap.add_argument("--report-sizes", type=int, nargs="+", default=REPORT_SIZES)
    ap.add_argument("--allow-big", action="store_true", help="permit running sizes >= 10,000 (minutes each)")
    ap.add_argument("--state-dir", default=None, help="reuse the stack running there (else a temporary one)")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--history-days", type=int, default=365, help="earlier dates in the main and context tables")
    ap.add_argument("--bq-latency-s", type=float, default=1.0, help="modelled seconds per BigQuery query on GCP")
    ap.add_argument("--dml-s", type=float, default=2.0, help="modelled seconds of one single-item MERGE (design a)")
    ap.add_argument("--load-job-s", type=float, default=2.0, help="modelled seconds of one load job (design b)")
    ap.add_argument("--item-s", type=float, default=None,
                    help="production seconds per worker request (default: the counted mean worker request)")
    ap.add_argument("--batches-per-day", type=int, default=1)
    ap.add_argument("--manifest-scan", choices=cost_usage.MANIFEST_SCANS, default="pin",
                    help="what a query of one pin reads of the manifest table: its pin's rows (clustered, "
                         "the default) or every pin the table keeps (the upper bound)")
    ap.add_argument("--baseline", default=None,
                    help="a cost JSON of an earlier design (e.g. the per-completion COUNT's, "
                         "results/cost-20261206T204728.json), modelled the same way beside ours")
    ap.add_argument("--no-wait", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="rebuild the report from the newest (or --json) file")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import cost_report

    if args.report_only:
        path = Path(args.json) if args.json else sorted(RESULTS_DIR.glob("cost-2*.json"))[-1]
        data = json.loads(path.read_text())
        data["params"].update({k: getattr(args, k) for k in ("report_sizes", "bq_latency_s", "dml_s", "load_job_s",
                                                             "item_s", "batches_per_day", "history_days",
                                                             "manifest_scan", "baseline")})
    else:
        if any(s >= BIG for s in args.sizes) and not args.allow_big:
            ap.error("running sizes of 10,000 or more needs --allow-big")
        data = measure(args)
    data["model"] = cost_report.model(data)
    if data["params"].get("baseline"):
        data["baseline"] = cost_report.baseline(Path(data["params"]["baseline"]), data["params"])
    name = f"cost-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json"
    if not args.report_only:
        print("->", write_json(name, data).name)
    cost_report.write(data)


if __name__ == "__main__":
    main()
