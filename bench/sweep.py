"""Batch size sweep of the CURRENT pipeline (per-item staging tables + one UNION MERGE), end to end on
the local stack, with real Pub/Sub push deliveries.

    PYTHONPATH=$PWD .venv/bin/python bench/sweep.py                      # 50 450 2000, twice each
    PYTHONPATH=$PWD .venv/bin/python bench/sweep.py --sizes 450 --repeat 2 \\
        --faults "staging_write=0.3,completion_publish=0.1"               # the fault comparison
    PYTHONPATH=$PWD .venv/bin/python bench/sweep.py --sizes 10000 --allow-10000 --repeat 1
    PYTHONPATH=$PWD .venv/bin/python bench/sweep.py --report-only        # table + plots from the JSON

Per run, one JSON file in bench/results/ (sweep-<size>-<clean|faults>-<time>.json): wall time (POST
/start until the batch is terminal), items/s, p50/p95 item latency (item document created_at ->
updated_at of its recorded completion), the phases from the batch document (created_at ->
dispatched_at -> consolidation_requested_at -> consolidated_at) and merge_result.timings_s, the loss
ledger's counts (mutating DML on the main table, duplicates, missing), BigQuery jobs by type during
the batch, the per-item completion timeline (for bench/designs.py) and the load average before and
after. Then bench/results/sweep.md and the PNG plots are rebuilt from every sweep JSON there, with the
floor (bench/floor.py's newest JSON) and each run's ratio to it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections import Counter

import requests
from common import RESULTS_DIR, loadavg, machine, percentile, r, read_results, stack, utc_now, write_json

from batchline import faults as faults_mod
from batchline.ledger import compute
from batchline.local.provision import seed_context, synthetic_context
from batchline.state import TERMINAL_STATUSES, BatchStore

DEFAULT_SIZES = [50, 450, 2000]
BIG = 10_000


def _secs(b: dict, a: str, z: str) -> float | None:
    return (b[z] - b[a]).total_seconds() if b.get(a) and b.get(z) else None


def jobs_during(clients, since: dt.datetime, until: dt.datetime) -> dict:
    """BigQuery jobs created while the batch ran, by type (and query jobs by statement type)."""
    by_type: Counter = Counter()
    for job in clients.bq.list_jobs(min_creation_time=since, all_users=True, max_results=200_000):
        if job.created and not (since <= job.created <= until):
            continue
        kind = job.job_type or "unknown"
        if kind == "query":
            kind = f"query:{(getattr(job, 'statement_type', None) or 'SELECT').upper()}"
        by_type[kind] += 1
    return dict(sorted(by_type.items()))


def one_run(info, clients, day: dt.date, size: int, faults: str | None, timeout_s: float) -> dict:
    spec = faults_mod.parse(faults).to_spec() if faults else None
    seed_context(clients.bq, clients.settings, day, synthetic_context(day, size))
    load_before = loadavg()
    t0 = time.monotonic()
    resp = requests.post(info.url("coordinator") + "/start", json={"game_date": day.isoformat(), "faults": spec},
                         timeout=600)
    resp.raise_for_status()
    batch_id = resp.json()["batch_id"]
    start_answered_s = time.monotonic() - t0
    store = BatchStore(clients.fs)
    deadline = t0 + timeout_s
    while (b := store.get_batch(batch_id))["status"] not in TERMINAL_STATUSES:
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    wall = time.monotonic() - t0
    load_after = loadavg()
    ledger = compute(clients, batch_id, wall)
    items = store.items(batch_id)
    created = b["created_at"]
    done = [i for i in items if i.get("status") == "completed"]
    lat = sorted((i["updated_at"] - i["created_at"]).total_seconds() for i in done)
    lat_dispatch = sorted((i["updated_at"] - created).total_seconds() for i in done)
    timeline = sorted(round((i["updated_at"] - created).total_seconds(), 3) for i in done)
    attempts = [int(i.get("attempts") or 1) for i in items]
    merge = b.get("merge_result") or {}
    consolidate_s = _secs(b, "consolidation_requested_at", "consolidated_at")
    run = {
        "kind": "sweep", "design": "per-item staging tables (current)", "size": size, "faults": spec or "",
        "at": utc_now(), "machine": machine(), "loadavg_before": load_before, "loadavg_after": load_after,
        "batch_id": batch_id, "game_date": day.isoformat(), "status": b["status"],
        "wall_s": r(wall), "start_call_s": r(start_answered_s), "items_per_s": r(size / wall, 2),
        "latency_s": {"p50": r(percentile(lat, 50)), "p95": r(percentile(lat, 95)), "max": r(max(lat, default=None))},
        "latency_from_batch_start_s": {"p50": r(percentile(lat_dispatch, 50)),
                                       "p95": r(percentile(lat_dispatch, 95))},
        "phases_s": {
            "dispatch": r(_secs(b, "created_at", "dispatched_at")),
            "work": r(_secs(b, "dispatched_at", "consolidation_requested_at")),
            "consolidation": r(consolidate_s),
            "first_completion": r(timeline[0] if timeline else None),
            "last_completion": r(timeline[-1] if timeline else None),
        },
        "consolidation_s_per_1000_items": r(consolidate_s * 1000 / size) if consolidate_s else None,
        "merge_timings_s": merge.get("timings_s", {}),
        "ledger": {k: v for k, v in ledger.as_dict().items() if k not in ("dead_lettered_ids", "missing_items")}
        | {"missing": len(ledger.missing_items)},
        "main_table_mutating_dml": ledger.main_table_mutating_dml,
        "duplicates": ledger.duplicate_rows,
        "items": {"completed": len(done), "failed": sum(1 for i in items if i.get("status") == "failed"),
                  "attempts_total": sum(attempts), "attempts_max": max(attempts, default=0),
                  "redelivered_items": sum(1 for a in attempts if a > 1)},
        "staging_tables_created": len(merge.get("tables", [])),
        "scratch_tables_created": len(merge.get("scratch_tables", [])),
        "staging_tables_deleted": b.get("staging_tables_deleted"),
        "bq_jobs": jobs_during(clients, created, b.get("consolidated_at") or b["updated_at"]),
        "completion_offsets_s": timeline,
    }
    return run


# ------------------------------------------------------------------------------------------------
# Report: markdown table + plots from every sweep JSON
# ------------------------------------------------------------------------------------------------


def floor_for(size: int) -> tuple[float | None, str]:
    """The floor for `size` items from bench/floor.py's newest JSON: measured at that size if it was,
    else per-item push cost x size + the MERGE fitted linearly on the measured sizes."""
    floors = read_results("floor-")
    if not floors:
        return None, ""
    f = floors[-1]
    for run in f.get("runs", []):
        if run.get("n") == size and run.get("floor_s"):
            return run["floor_s"], f["_file"]
    model = f.get("model") or {}
    if not model:
        return None, ""
    return (model["per_item_s"] * size + model["merge_fixed_s"] + model["merge_per_item_s"] * size,
            f["_file"] + " (extrapolated)")


def _med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def report() -> None:
    runs = [x for x in read_results("sweep-") if x.get("kind") == "sweep"]
    if not runs:
        print("no sweep results yet", file=sys.stderr)
        return
    runs.sort(key=lambda x: (x["faults"] != "", x["size"], x["at"]))
    lines = [
        "# Sweep of the current design (per-item staging tables, one UNION MERGE)",
        "",
        "Generated by `bench/sweep.py` from the JSON files next to this one; each row is one run.",
        "Latency: item document created_at -> updated_at at its recorded completion. Floor: bench/floor.py",
        "(newest floor JSON; `~` = extrapolated from the per-item cost and a linear MERGE fit). chunks s: the",
        "CREATE TABLE AS SELECT of each 500 staging tables into a scratch table, before the MERGE (> 500 items).",
        "",
        "| size | faults | wall s | items/s | p50 s | p95 s | dispatch s | work s | consolidation s "
        "| chunks s | MERGE s | consol. s /1k | DML main | dups | missing | floor s | wall/floor "
        "| load 1m before/after | file |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for x in runs:
        ph = x["phases_s"]
        floor, src = floor_for(x["size"])
        ratio = f"{x['wall_s'] / floor:.1f}x" if floor else "-"
        fl = "-" if floor is None else (f"~{floor:.1f}" if "extrapolated" in src else f"{floor:.1f}")
        merge = (x.get("merge_timings_s") or {}).get("merge")
        chunks = (x.get("merge_timings_s") or {}).get("combine_chunks", "-")
        lines.append(
            f"| {x['size']} | {'faults' if x['faults'] else 'clean'} | {x['wall_s']:.1f} | {x['items_per_s']:.1f} "
            f"| {x['latency_s']['p50']} | {x['latency_s']['p95']} | {ph['dispatch']} | {ph['work']} "
            f"| {ph['consolidation']} | {chunks} | {merge if merge is not None else '-'} "
            f"| {x.get('consolidation_s_per_1000_items')} | {x['main_table_mutating_dml']} | {x['duplicates']} "
            f"| {x['ledger']['missing']} | {fl} | {ratio} "
            f"| {x['loadavg_before'][0]}/{x['loadavg_after'][0]} | {x['_file']} |")
    fault_specs = sorted({x["faults"] for x in runs if x["faults"]})
    if fault_specs:
        lines += ["", "Fault runs: " + "; ".join(f"`{s}`" for s in fault_specs)]
    md = RESULTS_DIR / "sweep.md"
    md.write_text("\n".join(lines) + "\n")
    print(md.read_text())
    _plots([x for x in runs if not x["faults"]])


def _plots(clean: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots", file=sys.stderr)
        return
    sizes = sorted({x["size"] for x in clean})
    by = {s: [x for x in clean if x["size"] == s] for s in sizes}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in sizes:
        a1.scatter([s] * len(by[s]), [x["items_per_s"] for x in by[s]], color="tab:blue", s=18)
        a2.scatter([s] * len(by[s]), [x["phases_s"]["consolidation"] for x in by[s]], color="tab:red", s=18)
    a1.plot(sizes, [_med([x["items_per_s"] for x in by[s]]) for s in sizes], color="tab:blue", label="current (median)")
    a2.plot(sizes, [_med([x["phases_s"]["consolidation"] for x in by[s]]) for s in sizes], color="tab:red",
            label="current (median)")
    a2.plot(sizes, [s / 1000 for s in sizes], color="grey", ls="--", label="target: 1 s per 1,000 items")
    floors = [(s, f) for s in sizes if (f := floor_for(s)[0])]
    if floors:
        a1.plot([s for s, _ in floors], [s / f for s, f in floors], color="grey", ls="--",
                label="floor (bench/floor.py)")
    for ax in (a1, a2):
        ax.set_xscale("log")
        ax.set_xlabel("batch size (items)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    a1.set_ylabel("items/s end to end")
    a1.set_title("Throughput vs batch size")
    a2.set_ylabel("seconds (requested -> consolidated)")
    a2.set_title("Consolidation time vs batch size")
    fig.suptitle(f"current design, local stack, {clean[-1]['machine']['cpus']} cores (shared; see load in sweep.md)",
                 fontsize=9)
    fig.tight_layout()
    out = RESULTS_DIR / "sweep.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    ap.add_argument("--repeat", type=int, default=2, help="runs per configuration (noisy machine)")
    ap.add_argument("--faults", default="", help='e.g. "staging_write=0.3,completion_publish=0.1"')
    ap.add_argument("--allow-10000", action="store_true",
                    help="permit sizes >= 10,000 (the current design needs ~10 min and chunk tables)")
    ap.add_argument("--state-dir", default=None, help="reuse the stack running there (else a temporary one)")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if args.report_only:
        report()
        return
    if any(s >= BIG for s in args.sizes) and not args.allow_10000:
        ap.error("sizes of 10,000 or more need --allow-10000")
    with stack(args.state_dir, args.threads) as info:
        clients = info.activate()
        # a fresh date per run, far from any other run's (the main table keeps every run's rows)
        day = dt.date(2040, 1, 1) + dt.timedelta(days=int(time.time()) % 20_000)
        for rep in range(args.repeat):
            for size in args.sizes:  # round robin: a burst of load on the machine hits every size
                run = one_run(info, clients, day, size, args.faults or None, args.timeout)
                run["repeat"] = rep
                tag = "faults" if run["faults"] else "clean"
                path = write_json(f"sweep-{size}-{tag}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json", run)
                print({k: run[k] for k in ("size", "faults", "wall_s", "items_per_s", "latency_s", "phases_s",
                                           "main_table_mutating_dml", "duplicates", "loadavg_before")},
                      "->", path.name, flush=True)
                day += dt.timedelta(days=1)
    report()


if __name__ == "__main__":
    main()
