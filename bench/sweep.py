"""Batch size sweep of the pipeline checked out next to this script, end to end on the local stack, with
real Pub/Sub push deliveries. Both designs of issue 10 are understood: HEAD's batch table (one staging
table per batch written through the Storage Write API default stream, one MERGE of the manifest) and the
replaced per-item staging tables (05d660d: a load job per item, one UNION MERGE, chunk tables past 500).
The run JSON says which design ran (`design`; detected from batchline/adapters/write_api.py).

    PYTHONPATH=$PWD .venv/bin/python bench/sweep.py                      # 50 450 2000, twice each
    PYTHONPATH=$PWD .venv/bin/python bench/sweep.py --sizes 450 --repeat 2 \\
        --faults "staging_write=0.3,completion_publish=0.1"               # the fault comparison
    PYTHONPATH=$PWD .venv/bin/python bench/sweep.py --sizes 10000 --allow-10000 --repeat 1
    PYTHONPATH=$PWD .venv/bin/python bench/sweep.py --sizes 50000 --allow-big --repeat 1 --timeout 7200
    PYTHONPATH=$PWD .venv/bin/python bench/sweep.py --report-only        # table + plots from the JSON

Per run, one JSON file in bench/results/ (sweep-<size>-<clean|faults>-<time>.json): wall time (POST
/start until the batch is terminal), items/s, p50/p95 item latency (item document created_at ->
updated_at of its recorded completion), the phases from the batch document (created_at ->
dispatched_at -> consolidation_requested_at -> consolidated_at) and merge_result.timings_s, the loss
ledger's counts (mutating DML on the main table, duplicates, missing), BigQuery jobs by type during
the batch and their sum (`queries_per_batch`: O(1) in the items since issue 15), the bulk claim
verifications from the coordinator's log (`claim_verification`), the per-item completion timeline (for
bench/designs.py) and the load average before and after. Then bench/results/sweep.md and the PNG plots
are rebuilt from every sweep JSON there, with the floor (bench/floor.py's newest JSON) and each run's
ratio to it, and each size's cost per item against the 450-item runs of the same code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import requests
from common import RESULTS_DIR, loadavg, machine, percentile, r, read_results, stack, utc_now, wait_quiet, write_json

import batchline
from batchline.adapters.batch_store import BatchStore
from batchline.domain import faults as faults_mod
from batchline.domain.statuses import TERMINAL_STATUSES
from batchline.flows.ledger import compute
from batchline.local.provision import seed_context, synthetic_context

DEFAULT_SIZES = [50, 450, 2000]
BIG = 10_000
NEW_DESIGN = "batch table (Storage Write API)"
OLD_DESIGN = "per-item staging tables (05d660d)"


def checked_out_design() -> str:
    """The design of the batchline package imported here: HEAD has batchline/adapters/write_api.py."""
    return NEW_DESIGN if (Path(batchline.__file__).parent / "write_api.py").exists() else OLD_DESIGN


def batchline_source() -> dict:
    """Which batchline the run imported: its folder, that checkout's commit and whether it had local changes
    (other engineers edit /work/main/batchline while benchmarks run: run HEAD from a clean worktree)."""
    import subprocess

    root = Path(batchline.__file__).resolve().parent.parent
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"path": str(root), "commit": git("rev-parse", "--short", "HEAD"),
            "dirty_batchline": bool(git("status", "--porcelain", "--", "batchline"))}


def design_of(run: dict) -> str:
    """A run JSON's design, old files included (they say "per-item staging tables (current)")."""
    d = run.get("design") or ""
    if d == NEW_DESIGN or "manifest" in (run.get("merge_result_keys") or []):
        return NEW_DESIGN
    return OLD_DESIGN if d.startswith("per-item") or not d else d


def _secs(b: dict, a: str, z: str) -> float | None:
    return (b[z] - b[a]).total_seconds() if b.get(a) and b.get(z) else None


def cpu_by_service(info) -> dict[str, float]:
    """CPU seconds (user + system, children included) used so far by each stack service's process group:
    sampled before and after a run, the difference says which process the run's time went to."""
    tick = os.sysconf("SC_CLK_TCK")
    groups = {h.pgid or h.pid: name for name, h in info.handles.items()}
    out = dict.fromkeys(groups.values(), 0.0)
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = groups.get(int(fields[2]))  # field 5 of stat: the process group
        if name:
            out[name] += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    return out


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


def claim_rounds(info, batch_id: str) -> dict:
    """The batch's bulk verifications (issue 15) from the coordinator's log: rounds (`claims_verified`,
    one grouped query each), claims judged and rejected; {} on code without them."""
    import json

    path = Path(info.handles["coordinator"].log_path)
    rounds = claims = rejected = 0
    with open(path, errors="replace") as log:
        for line in log:
            if '"claims_verified"' not in line or batch_id not in line:
                continue
            try:
                x = json.loads(line)
            except ValueError:
                continue
            if x.get("event") == "claims_verified" and x.get("batch_id") == batch_id:
                rounds += 1
                claims += int(x.get("claims") or 0)
                rejected += int(x.get("rejected") or 0)
    return {"rounds": rounds, "claims_judged": claims, "rejected": rejected} if rounds else {}


def queries(jobs: dict) -> int:
    """Query jobs (every statement: SELECT and DML) of a `jobs_during` count."""
    return sum(n for kind, n in jobs.items() if kind.startswith("query"))


def one_run(info, clients, day: dt.date, size: int, faults: str | None, timeout_s: float) -> dict:
    spec = faults_mod.parse(faults).to_spec() if faults else None
    seed_context(clients.bq, clients.settings, day, synthetic_context(day, size))
    load_before = loadavg()
    cpu_before = cpu_by_service(info)
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
    cpu_after = cpu_by_service(info)
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
        "kind": "sweep", "size": size, "faults": spec or "",
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
        "bq_jobs": jobs_during(clients, created, b.get("consolidated_at") or b["updated_at"]),
        "completion_offsets_s": timeline,
        "cpu_s_by_service": {k: round(cpu_after.get(k, 0.0) - v, 2) for k, v in cpu_before.items()},
        "merge_result_keys": sorted(merge),
        # the consolidation's own statements: jobs created between the request and the result
        "bq_jobs_consolidation": (jobs_during(clients, b["consolidation_requested_at"], b["consolidated_at"])
                                  if b.get("consolidation_requested_at") and b.get("consolidated_at") else {}),
    }
    run["batchline_source"] = batchline_source()
    run["queries_per_batch"] = queries(run["bq_jobs"])
    run["claim_verification"] = claim_rounds(info, batch_id)
    design = checked_out_design()
    if "manifest" in merge or "pin" in merge:
        design = NEW_DESIGN
    run["design"] = design
    run["load_jobs"] = run["bq_jobs"].get("load", 0)
    if design == NEW_DESIGN:
        # one table per batch (stg_<batch>), created at dispatch; consolidation drops it after verifying
        run["staging_tables_created"] = 1 if (merge or b.get("staging_table_dropped") is not None) else 0
        dropped = b.get("staging_table_dropped")
        run["staging_tables_deleted"] = None if dropped is None else int(dropped)
        run["scratch_tables_created"] = 0
        run["abandoned_writes"] = b.get("abandoned_writes", merge.get("abandoned_writes"))
        # since issue 15 the item lists are capped at 1,000 with a count beside them, and the manifest is a
        # pin of the manifest table (its item count is what the MERGE verified)
        run["recovered_items"] = b.get("recovered_items_count", len(b.get("recovered_items") or
                                                                     merge.get("recovered") or []))
        run["manifest_items"] = len(merge["manifest"]) if "manifest" in merge else merge.get("verified_items", 0)
        run["staged_rows_total"] = merge.get("staged_rows_total")
        run["merge_result"] = {k: merge.get(k) for k in ("job_id", "staged_rows", "staged_keys", "staged_items",
                                                         "affected_rows", "verified_rows", "verified_items")}
        run["staging_gap"] = b.get("staging_gap")
        run["completed_without_write"] = b.get("completed_without_write_count",
                                               len(b.get("completed_without_write") or []))
    else:
        run["staging_tables_created"] = len(merge.get("tables", []))
        run["scratch_tables_created"] = len(merge.get("scratch_tables", []))
        run["staging_tables_deleted"] = b.get("staging_tables_deleted")
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


DESIGN_SHORT = {NEW_DESIGN: "new", OLD_DESIGN: "old"}


def code_of(x: dict) -> str:
    """The commit the run's batchline came from (`batchline_source` when recorded, else the bench folder's)."""
    src = x.get("batchline_source")
    if src:
        return src["commit"] + (" + local changes" if src.get("dirty_batchline") else "")
    return (x.get("machine") or {}).get("git", "?") + ("*" if design_of(x) == NEW_DESIGN else "")


def _timings(x: dict) -> str:
    t = x.get("merge_timings_s") or {}
    return ", ".join(f"{k} {v}" for k, v in t.items()) or "-"


def _fmt(v, nd: int = 1) -> str:
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def _rounds(x: dict) -> str:
    c = x.get("claim_verification") or {}
    return f"{c['rounds']} ({c['rejected']})" if c else "-"


def _ratio(per_item: float | None, wall_ref: float | None, ref_size: int) -> str:
    return f"{per_item / (wall_ref / ref_size):.2f}x" if per_item and wall_ref else "-"


def report(since: str | None = None) -> None:
    """bench/results/sweep.md (a summary of medians per design and size for the runs at or after `since`,
    then every run) and sweep.png (both designs)."""
    runs = [x for x in read_results("sweep-") if x.get("kind") == "sweep"]
    if not runs:
        print("no sweep results yet", file=sys.stderr)
        return
    for x in runs:
        x["_design"] = design_of(x)
    runs.sort(key=lambda x: (x["faults"] != "", x["size"], x["_design"], x["at"]))
    session = [x for x in runs if not since or x["at"] >= since]
    lines = [
        "# Sweep: batch table (Storage Write API, HEAD) vs per-item staging tables (05d660d)",
        "",
        "Generated by `bench/sweep.py --report-only` from the JSON files next to this one.",
        "Latency: item document created_at (dispatch) -> updated_at at its recorded completion. Floor: the",
        "newest bench/floor.py JSON (`~` = extrapolated from the per-item cost and a linear MERGE fit).",
        "consolidation: batch document consolidation_requested_at -> consolidated_at; merge timings are",
        "`merge_result.timings_s` (new: inventory = schema check + the pinned writes' staged counts, merge,",
        "verify; old: chunk tables (`combine_chunks`), MERGE, ...).",
        "",
        f"## Medians per design and size{' (runs at or after ' + since + ')' if since else ''}",
        "",
        "| size | faults | design | code | runs | wall s | items/s | p50 s | p95 s | consolidation s | consol. s /1k "
        "| ms/item | ms/item vs 450 | queries/batch | floor s | wall/floor | DML main | dups | missing "
        "| load 1m before |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for x in session:
        groups.setdefault((x["size"], x["faults"], x["_design"], code_of(x)), []).append(x)
    # per-item cost against the clean 450-item runs of the same design and code (issue 15: 50,000 within 1.2x)
    ref450 = {(d, c): _med([x["wall_s"] for x in xs]) for (s, f, d, c), xs in groups.items() if s == 450 and not f}
    for (size, faults, design, code), xs in sorted(groups.items(),
                                                   key=lambda kv: (kv[0][1] != "", kv[0][0], kv[0][2], kv[0][3])):
        wall = _med([x["wall_s"] for x in xs])
        floor, src = floor_for(size)
        fl = "-" if floor is None else (f"~{floor:.1f}" if "extrapolated" in src else f"{floor:.1f}")
        lines.append(
            f"| {size} | {'faults' if faults else 'clean'} | {DESIGN_SHORT.get(design, design)} | {code} "
            f"| {len(xs)} | {_fmt(wall)} | {_fmt(_med([x['items_per_s'] for x in xs]))} "
            f"| {_fmt(_med([x['latency_s']['p50'] for x in xs]), 2)} "
            f"| {_fmt(_med([x['latency_s']['p95'] for x in xs]), 2)} "
            f"| {_fmt(_med([x['phases_s']['consolidation'] for x in xs]), 2)} "
            f"| {_fmt(_med([x.get('consolidation_s_per_1000_items') for x in xs]), 2)} "
            f"| {_fmt(1000 * wall / size if wall else None)} "
            f"| {_ratio(wall / size if wall else None, ref450.get((design, code)), 450)} "
            f"| {'/'.join(str(x.get('queries_per_batch', queries(x.get('bq_jobs') or {}))) for x in xs)} | {fl} "
            f"| {(f'{wall / floor:.2f}x' if floor and wall else '-')} "
            f"| {'/'.join(str(x['main_table_mutating_dml']) for x in xs)} "
            f"| {'/'.join(str(x['duplicates']) for x in xs)} "
            f"| {'/'.join(str(x['ledger']['missing']) for x in xs)} "
            f"| {', '.join(str(x['loadavg_before'][0]) for x in xs)} |")
    lines += [
        "",
        "## Every run",
        "",
        "| size | faults | design | code | wall s | items/s | p50 s | p95 s | dispatch s | work s | consolidation s "
        "| merge_result.timings_s | consol. s /1k | DML main | dups | missing | load jobs | staging tables "
        "| abandoned writes | recovered | attempts | queries | claim rounds (rejected) | floor s | wall/floor "
        "| load 1m before/after | at | file |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
        "|---:|---:|---:|---|---|---|",
    ]
    for x in runs:
        ph = x["phases_s"]
        floor, src = floor_for(x["size"])
        ratio = f"{x['wall_s'] / floor:.2f}x" if floor else "-"
        fl = "-" if floor is None else (f"~{floor:.1f}" if "extrapolated" in src else f"{floor:.1f}")
        loads = x.get("load_jobs", (x.get("bq_jobs") or {}).get("load", 0))
        lines.append(
            f"| {x['size']} | {'faults' if x['faults'] else 'clean'} | {DESIGN_SHORT.get(x['_design'], x['_design'])} "
            f"| {code_of(x)} | {x['wall_s']:.1f} | {x['items_per_s']:.1f} "
            f"| {x['latency_s']['p50']} | {x['latency_s']['p95']} | {ph['dispatch']} | {ph['work']} "
            f"| {ph['consolidation']} | {_timings(x)} "
            f"| {x.get('consolidation_s_per_1000_items')} | {x['main_table_mutating_dml']} | {x['duplicates']} "
            f"| {x['ledger']['missing']} | {loads} | {x.get('staging_tables_created')} "
            f"| {x.get('abandoned_writes', '-')} | {x.get('recovered_items', '-')} "
            f"| {x['items']['attempts_total']} | {x.get('queries_per_batch', queries(x.get('bq_jobs') or {}))} "
            f"| {_rounds(x)} | {fl} | {ratio} "
            f"| {x['loadavg_before'][0]}/{x['loadavg_after'][0]} | {x['at']} | {x['_file']} |")
    fault_specs = sorted({x["faults"] for x in runs if x["faults"]})
    if fault_specs:
        lines += ["", "Fault runs: " + "; ".join(f"`{s}`" for s in fault_specs)]
    lines += ["", "Designs: new = " + NEW_DESIGN + "; old = " + OLD_DESIGN + ". code: the commit batchline was "
              "imported from (`*` = /work/main's working tree at that commit, other engineers editing it)."]
    md = RESULTS_DIR / "sweep.md"
    md.write_text("\n".join(lines) + "\n")
    print(md.read_text())
    _plots([x for x in session if not x["faults"]], since)


def _plots(clean: list[dict], since: str | None) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots", file=sys.stderr)
        return
    if not clean:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    colours = {NEW_DESIGN: "tab:blue", OLD_DESIGN: "tab:orange"}
    all_sizes = sorted({x["size"] for x in clean})
    for design, colour in colours.items():
        xs = [x for x in clean if x["_design"] == design]
        if not xs:
            continue
        sizes = sorted({x["size"] for x in xs})
        by = {s: [x for x in xs if x["size"] == s] for s in sizes}
        for s in sizes:
            a1.scatter([s] * len(by[s]), [x["items_per_s"] for x in by[s]], color=colour, s=16, alpha=0.6)
            a2.scatter([s] * len(by[s]), [x["phases_s"]["consolidation"] for x in by[s]], color=colour, s=16,
                       alpha=0.6)
        label = f"{DESIGN_SHORT[design]}: {design} (median)"
        a1.plot(sizes, [_med([x["items_per_s"] for x in by[s]]) for s in sizes], color=colour, label=label)
        a2.plot(sizes, [_med([x["phases_s"]["consolidation"] for x in by[s]]) for s in sizes], color=colour,
                label=label)
    a2.plot(all_sizes, [s / 1000 for s in all_sizes], color="grey", ls="--", label="target: 1 s per 1,000 items")
    floors = [(s, f) for s in all_sizes if (f := floor_for(s)[0])]
    if floors:
        a1.plot([s for s, _ in floors], [s / f for s, f in floors], color="grey", ls="--",
                label="floor (bench/floor.py; 10,000 extrapolated)")
    for ax in (a1, a2):
        ax.set_xscale("log")
        ax.set_xlabel("batch size (items)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    a2.set_yscale("log")
    a1.set_ylabel("items/s end to end")
    a1.set_title("Throughput vs batch size")
    a2.set_ylabel("seconds (requested -> consolidated), log")
    a2.set_title("Consolidation time vs batch size")
    fig.suptitle(f"local stack, {clean[-1]['machine']['cpus']} cores shared (load in sweep.md)"
                 + (f"; runs since {since}" if since else ""), fontsize=9)
    fig.tight_layout()
    out = RESULTS_DIR / "sweep.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES)
    ap.add_argument("--repeat", type=int, default=2, help="runs per configuration (noisy machine)")
    ap.add_argument("--faults", default="", help='e.g. "staging_write=0.3,completion_publish=0.1"')
    ap.add_argument("--allow-10000", "--allow-big", dest="allow_10000", action="store_true",
                    help="permit sizes >= 10,000 (minutes each here: 10,000 ~3-6 min, 50,000 ~half an hour; "
                         "give such a run a --timeout to match)")
    ap.add_argument("--state-dir", default=None, help="reuse the stack running there (else a temporary one)")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--since", default=None, help="report: summary and plots only of runs at or after this "
                                                      "ISO time (e.g. 2026-11-23T15:50); the per-run table has all")
    ap.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine before each run")
    args = ap.parse_args()
    if args.report_only:
        report(args.since)
        return
    if any(s >= BIG for s in args.sizes) and not args.allow_10000:
        ap.error("sizes of 10,000 or more need --allow-10000")
    with stack(args.state_dir, args.threads) as info:
        clients = info.activate()
        # a fresh date per run, far from any other run's (the main table keeps every run's rows)
        day = dt.date(2040, 1, 1) + dt.timedelta(days=int(time.time()) % 20_000)
        for rep in range(args.repeat):
            for size in args.sizes:  # round robin: a burst of load on the machine hits every size
                waited = {} if args.no_wait else wait_quiet()
                run = one_run(info, clients, day, size, args.faults or None, args.timeout)
                run["repeat"] = rep
                run["wait_quiet"] = waited
                tag = "faults" if run["faults"] else "clean"
                path = write_json(f"sweep-{size}-{tag}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.json", run)
                keys = ("design", "size", "faults", "wall_s", "items_per_s", "latency_s", "phases_s",
                        "main_table_mutating_dml", "duplicates", "loadavg_before", "abandoned_writes",
                        "recovered_items", "load_jobs")
                print({k: run.get(k) for k in keys}, "->", path.name, flush=True)
                day += dt.timedelta(days=1)
    report(args.since)


if __name__ == "__main__":
    main()
