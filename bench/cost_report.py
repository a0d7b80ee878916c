"""The cost model of bench/cost.py's counted runs at each report size, and its report:
bench/results/cost.md (a table per size: calls, bytes, dollars, quota headroom; the designs side by side)
and bench/results/cost.png (dollars and API calls against batch size, one line per design)."""

from __future__ import annotations

import sys
from pathlib import Path

import cost_designs
import cost_scale
import cost_usage
import yaml
from common import RESULTS_DIR
from cost_prices import PRICES, QUOTAS, READ

REPO = Path(__file__).resolve().parent.parent
DESIGNS = {"ours": "batch table, claims verified in bulk (ours: counted at the dotted sizes)",
           "baseline": "batch table, a COUNT per completion (--baseline)",
           "a_per_item_merge": "(a) per-item MERGE (modelled)",
           "b_per_item_tables": "(b) per-item tables + UNION MERGE, 05d660d (modelled)"}


def load_caps(path: Path = REPO / "Pulumi.prod.yaml") -> tuple[dict, str]:
    """Each function's effective caps (memory, cpu, max_instances, concurrency) from the production
    stack file through infra/config.py's own loader, and the stall check's cron."""
    from infra.config import load

    raw = yaml.safe_load(path.read_text())["config"]
    cfg = load({k.split(":", 1)[1]: v for k, v in raw.items()}, has_slack_token=True)
    caps = {fn: c.model_dump() for fn, c in cfg.functions.caps.items()}
    return caps, cfg.schedules.stall_check.cron


def _cron_field(field: str, lo: int, hi: int) -> set[int]:
    out: set[int] = set()
    for part in field.split(","):
        rng, _, step = part.partition("/")
        a, b = (lo, hi) if rng == "*" else (int(rng.split("-")[0]), int(rng.split("-")[-1]))
        out.update(range(a, b + 1, int(step or 1)))
    return out


def firings_per_day(cron: str) -> int:
    """How often a daily cron (`minute hour * * *`: lists, ranges and steps) fires in a day."""
    minute, hour, dom, month, dow = cron.split()
    if (dom, month, dow) != ("*", "*", "*"):
        raise ValueError(f"only daily crons are counted here, got {cron!r}")
    return len(_cron_field(minute, 0, 59)) * len(_cron_field(hour, 0, 23))


def _mean_wall(run: dict, fn: str, route: str) -> float:
    inv = run["usage"].get(fn, {}).get("invocations", {}).get(route, {})
    return inv.get("wall_s", 0.0) / inv["n"] if inv.get("n") else 0.0


def hottest_shard_ratio(run: dict) -> float:
    """The hottest progress shard's writes over the mean items per shard in a counted run (items hash to
    shards unevenly: a shard may count more than 50)."""
    shard_writes = [h["writes"] for h in run["hot_docs"] if "/progress/" in h["doc"]]
    if not shard_writes:
        return 1.0
    shards = max(1, -(-run["items"] // cost_designs.SHARD_ITEMS))
    return max(1.0, max(shard_writes) / (run["items"] / shards))


def _lifetime(runs: list[dict], items: int) -> float:
    a, b = cost_scale.linear_fit([(r["items"], r["wall_s"]) for r in runs])
    return max(1.0, a + b * items)


def _phase_usd(phase: dict, tables, caps, p, row_bytes) -> float:
    stmts = phase["statements"]
    return cost_scale.dollars(phase["usage"], stmts, tables, caps, bq_latency_s=p["bq_latency_s"],
                              staging_lifetime_s=0.0, row_bytes=row_bytes)["total_usd"]


def model(data: dict) -> dict:
    runs, p = data["runs"], dict(data["params"])
    caps, stall_cron = load_caps()
    ref = max(runs, key=lambda r: r["items"])
    r, mr = ref["rows_per_item"], ref.get("manifest_rows_per_item", 0.0)
    ids = ref["table_ids"]
    base = cost_usage.Tables(ids["main"], ids["context"], ids["staging_dataset"], ref["col_bytes"], {}, {},
                             manifest_id=ids.get("manifest", ""), manifest_scan=p.get("manifest_scan") or "pin")
    p.setdefault("item_s", None)
    completions = sum(u.get("invocations", {}).get(route, {}).get("n", 0) for u in ref["usage"].values()
                      for route in ("POST /completions", "POST /dead-letters/completions"))
    params = {**p, "rows_per_item": r, "manifest_rows_per_item": mr,
              "staging_row_bytes": ref["row_bytes"]["staging"],
              "item_s": p["item_s"] or _mean_wall(ref, "worker", "POST /"),
              "completion_s": _mean_wall(ref, "coordinator", "POST /completions"),
              "completion_queries": cost_scale.completion_queries(ref["usage"], ref["statements"])
              / max(1, completions)}
    merge = next((c for c in ref["statements"] if c["kind"] == "MERGE"), {"pruned": {}})
    params["pruned_merge"] = bool(merge["pruned"].get("main"))
    shard_ratio = hottest_shard_ratio(ref)
    sizes = {}
    for n in sorted(set(p["report_sizes"]) | {x["items"] for x in runs}):
        usage, stmts, label = cost_scale.at_size(runs, n)
        tables = cost_scale.tables_at(base, n, r, p["history_days"], manifest_rows_per_item=mr)
        if label != "counted":
            stmts = cost_scale.statement_bytes(stmts, tables)
        dl = cost_scale.dollars(usage, stmts, tables, caps, bq_latency_s=p["bq_latency_s"],
                                staging_lifetime_s=_lifetime(runs, n), row_bytes=ref["row_bytes"])
        api = cost_scale.api_calls(usage)
        ours = {"dollars": dl, "api": api, "statements": stmts, "hottest_shard_ratio": shard_ratio, "counts": {
            "completion_queries": cost_scale.completion_queries(usage, stmts),
            "append_rows": sum(u.get("write_api", {}).get("requests", 0.0) for u in usage.values())}}
        sizes[str(n)] = {"items": n, "source": label, "usage": usage, "statements": stmts, "dollars": dl,
                         "api_calls": api, "completion_queries": ours["counts"]["completion_queries"],
                         "designs": cost_designs.modelled_designs(n, ours, tables, caps, params),
                         "headroom": cost_designs.headroom(n, ours, caps, params)}
    tables = cost_scale.tables_at(base, ref["items"], r, p["history_days"], manifest_rows_per_item=mr)
    per_day = firings_per_day(stall_cron)
    stall = _phase_usd(ref["daily"]["stall_check"], tables, caps, p, ref["row_bytes"])
    rec = _phase_usd(ref["daily"]["reconcile"], tables, caps, p, ref["row_bytes"])
    daily = {"stall_check_usd_each": stall, "stall_checks_per_day": per_day, "reconcile_usd": rec,
             "scheduler_jobs": 3, "scheduler_usd_month": 3 * PRICES["scheduler_per_job_month"].value,
             "usd_per_day": stall * per_day + rec}
    return {"caps": caps, "params": params, "sizes": sizes, "daily": daily}


def baseline(path: Path, params: dict) -> dict:
    """An earlier design's counted runs (another cost JSON) modelled by today's code at the same report
    sizes and assumptions: per size its total, statements, completion queries and API calls."""
    import json

    data = json.loads(path.read_text())
    data["params"].update({k: params[k] for k in ("report_sizes", "bq_latency_s", "dml_s", "load_job_s", "item_s",
                                                  "batches_per_day", "history_days") if k in params})
    m = model(data)
    commits = sorted({(r.get("batchline_source") or {}).get("commit") or "" for r in data["runs"]} - {""})
    return {"file": path.name, "at": data["at"], "commits": commits or [f"bench at {data['machine'].get('git')}"],
            "counted_sizes": [r["items"] for r in data["runs"]],
            "sizes": {k: {"items": s["items"], "source": s["source"], "total_usd": s["dollars"]["total_usd"],
                          "bigquery_usd": s["dollars"]["bigquery_queries"]["usd"],
                          "functions_usd": s["dollars"]["cloud_run_functions"]["usd"],
                          "statements": s["dollars"]["bigquery_queries"]["statements"],
                          "completion_queries": s["completion_queries"], "api_calls": s["api_calls"]["total"]}
                      for k, s in m["sizes"].items()}}


def _usd(x: float) -> str:
    return f"${x:,.4f}" if x < 1 else f"${x:,.2f}"


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _gib(x: float) -> str:
    return f"{x / 2**30:,.3f} GiB"


def size_section(s: dict, base: dict | None = None) -> list[str]:
    d, api = s["dollars"], s["api_calls"]
    bq = sum(u.get("bigquery", {}).get("rest_total", 0) for u in s["usage"].values())
    jobs: dict = {}
    for u in s["usage"].values():
        for k, v in u.get("bigquery", {}).get("jobs", {}).items():
            jobs[k] = jobs.get(k, 0) + v
    fns = d["cloud_run_functions"]["by_function"]
    appends = sum(u.get("write_api", {}).get("requests", 0) for u in s["usage"].values())
    lines_ = [("BigQuery queries", f"{_n(d['bigquery_queries']['statements'])} statements "
               f"({', '.join(f'{k} {_n(v)}' for k, v in sorted(jobs.items()))}); {_n(bq)} REST requests",
               _gib(d["bigquery_queries"]["billed_bytes"]) + " billed", d["bigquery_queries"]["usd"]),
              ("Storage Write API", f"{_n(appends)} AppendRows, {_n(d['storage_write_api']['rows'])} rows",
               _gib(d["storage_write_api"]["logical_bytes"]),
               d["storage_write_api"]["usd"]),
              ("BigQuery storage (staging table)", f"{_n(d['bigquery_storage']['seconds'])} s",
               _gib(d["bigquery_storage"]["staging_bytes"]), d["bigquery_storage"]["usd"]),
              ("BigQuery storage (manifest rows)", f"{_n(d.get('storage_write_api', {}).get('manifest_rows', 0))} "
               f"rows kept {d.get('manifest_storage', {}).get('seconds', 0) / 86_400:,.0f} days",
               _gib(d.get("manifest_storage", {}).get("bytes", 0)), d.get("manifest_storage", {}).get("usd", 0.0)),
              ("Firestore", f"{_n(d['firestore']['reads'])} reads, {_n(d['firestore']['writes'])} writes, "
               f"{_n(d['firestore']['deletes'])} deletes", "-", d["firestore"]["usd"]),
              ("Pub/Sub", f"{_n(d['pubsub']['publish_requests'])} publish requests, "
               f"{_n(d['pubsub']['deliveries'])} push deliveries", _gib(d["pubsub"]["billable_bytes"]) + " billed",
               d["pubsub"]["usd"]),
              ("Cloud Run functions", "; ".join(f"{fn} {_n(v['requests'])} req, {v['gib_s']:,.0f} GiB-s"
                                                  for fn, v in fns.items()), "-", d["cloud_run_functions"]["usd"])]
    top = max(lines_, key=lambda x: x[3])
    out = [f"### {s['items']:,} items ({s['source']})", "",
           f"Total {_usd(d['total_usd'])} per batch; biggest line: {top[0]} ({_usd(top[3])}). API calls: "
           f"{_n(api['total'])} ({_n(api['bigquery_rest'])} BigQuery REST, {_n(api['grpc'])} gRPC, "
           f"{_n(api['push_deliveries'])} push deliveries).", "",
           "| service | calls | bytes | USD per batch |", "|---|---|---:|---:|"]
    out += [f"| {a} | {b} | {c} | {_usd(x)} |" for a, b, c, x in lines_]
    out += ["", "| statement (sender) | kind | executions | billed | pruned |", "|---|---|---:|---:|---|"]
    for c in s["statements"][:12]:
        out.append(f"| {c['process']}: {c['caller']} | {c['kind']} | {_n(c['n'])} | {_gib(c['billed_bytes'])} "
                   f"| {', '.join(f'{k}: {v}' for k, v in c['pruned'].items()) or '-'} |")
    out += ["", "| design | BigQuery $ | functions $ | Firestore + Pub/Sub $ | total $ | statements | mutating DML "
            "| API calls |", "|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| batch table, claims verified in bulk ({s['source']}) "
            f"| {_usd(d['bigquery_queries']['usd'] + d['storage_write_api']['usd'])} "
            f"| {_usd(d['cloud_run_functions']['usd'])} | {_usd(d['firestore']['usd'] + d['pubsub']['usd'])} "
            f"| {_usd(d['total_usd'])} | {_n(d['bigquery_queries']['statements'])} | 1 | {_n(api['total'])} |"]
    if base:
        out.append(f"| {DESIGNS['baseline']} ({base['source']}) | {_usd(base['bigquery_usd'])} "
                   f"| {_usd(base['functions_usd'])} | - | {_usd(base['total_usd'])} | {_n(base['statements'])} | 1 "
                   f"| {_n(base['api_calls'])} |")
    for key, v in s["designs"].items():
        out.append(f"| {DESIGNS[key]} | {_usd(v['bigquery_queries_usd'])} | {_usd(v['functions_usd'])} "
                   f"| {_usd(v['shared_usd'])} | {_usd(v['total_usd'])} | {_n(v['statements'])} "
                   f"| {_n(v['mutating_dml'])} | {_n(v['api_calls'])} |")
    h = s["headroom"]
    pc = h["pace"]
    out += ["", f"Quota headroom at the production pace: {pc['in_flight']} worker requests in flight, "
            f"{pc['item_s']:.3f} s each ({pc['worker_items_per_s']:,.0f} items/s); completions "
            f"{pc['completion_s']:.2f} s each ({pc['coordinator_completions_per_s']:,.0f}/s at the coordinator's "
            f"cap); the {pc['bottleneck']} sets the pace: {pc['completions_per_s']:,.0f} items/s, work phase "
            f"{pc['work_s']:,.1f} s (designs (a) and (b): {h['pace_a']['work_s']:,.1f} s and "
            f"{h['pace_b']['work_s']:,.1f} s).", "",
            "| design | quota | limit | use | headroom | basis | source |", "|---|---|---:|---:|---:|---|---|"]
    for key in ("ours", "a_per_item_merge", "b_per_item_tables"):
        for q in h[key]:
            flag = " **(exceeded)**" if q["headroom_x"] is not None and q["headroom_x"] < 1 else ""
            out.append(f"| {DESIGNS[key].split(' (')[0]} | {q['quota']} | {q['limit']:,.0f} | {q['use']:,.3f} "
                       f"| {q['headroom_x']}x{flag} | {q['basis']} | {q['source']} |")
    return out + [""]


def write(data: dict) -> None:
    m = data["model"]
    runs = data["runs"]
    lines = ["# What a batch costs on Google Cloud, and the quotas it uses", "",
             f"Generated by `bench/cost.py` ({data['at']}, {data['machine']}); prices and quotas from "
             f"bench/cost_prices.py, cited in docs/cost.md ({READ}). COUNTED: calls made by the real functions on "
             "the local stack (counting shim in each function process). MODELLED: bytes billed (from each "
             "statement's tables and columns), seconds on GCP (+ "
             f"{m['params']['bq_latency_s']:g} s per BigQuery query), sizes that did not run (fitted a + b * items), "
             "and designs (a) and (b). List prices, no free tier.", "",
             "The shim's statements against BigQuery's own job list (jobs.list from the bench, created between the "
             "batch document's creation and its consolidation, so it misses the 2 queries /start sends first):", "",
             "| items | wall s | status | mutating DML | rows/item | load before/after | jobs counted | jobs listed |",
             "|---:|---:|---|---:|---:|---|---|---|"]
    for r in runs:
        counted: dict = {}
        for u in r["usage"].values():
            for k, v in u["bigquery"]["jobs"].items():
                counted[k] = counted.get(k, 0) + v
        lines.append(f"| {r['items']:,} | {r['wall_s']} | {r['status']} | {r['main_table_mutating_dml']} "
                     f"| {r['rows_per_item']:.2f} | {r['loadavg_before'][0]}/{r['loadavg_after'][0]} "
                     f"| {', '.join(f'{k} {v:.0f}' for k, v in sorted(counted.items()))} "
                     f"| {', '.join(f'{k} {v}' for k, v in sorted(r['bq_jobs_listed'].items()))} |")
    lines += ["", "Functions (Pulumi.prod.yaml): " + "; ".join(
        f"{fn} {c['memory']} {c['cpu']} vCPU x{c['max_instances']} (concurrency {c['concurrency']})"
        for fn, c in m["caps"].items()), ""]
    base = (data.get("baseline") or {}).get("sizes", {})
    lines += summary(m, data.get("baseline"))
    for s in sorted(m["sizes"].values(), key=lambda s: s["items"]):
        lines += size_section(s, base.get(str(s["items"])))
    dd = m["daily"]
    lines += ["### Fixed daily costs (any batch size)", "",
              f"Stall check: {_usd(dd['stall_check_usd_each'])} each x {dd['stall_checks_per_day']} a day; "
              f"reconcile {_usd(dd['reconcile_usd'])} a day: {_usd(dd['usd_per_day'])} a day. Cloud Scheduler: "
              f"{dd['scheduler_jobs']} jobs, {_usd(dd['scheduler_usd_month'])} a month (3 free per billing account).",
              "", "### Hottest Firestore documents (counted, local pace)", "",
              "| items | document | writes | peak in 1 s | mean/s over its span |", "|---:|---|---:|---:|---:|"]
    for r in runs:
        for h in r["hot_docs"][:3]:
            lines.append(f"| {r['items']:,} | {h['doc']} | {h['writes']} | {h['peak_in_1s']} | {h['mean_per_s']} |")
    lines += ["", "Firestore writes by collection, all processes (counted): " + "; ".join(
        f"{r['items']:,} items: " + ", ".join(
            f"{t} {v['writes']:,} on {v['docs']:,} docs" for t, v in sorted(_templates(r).items()))
        for r in runs)]
    unsure = [k for k, f in {**PRICES, **QUOTAS}.items() if f.source in ("third-party", "unverified")]
    lines += ["", "Figures not read on a Google page (docs/cost.md says where each came from): " + ", ".join(unsure)]
    (RESULTS_DIR / "cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(m, data.get("baseline"))


def summary(m: dict, baseline: dict | None) -> list[str]:
    """One row per report size: what ours costs and sends, beside the other designs' totals."""
    out = ["## Per batch, every design", "",
           "BigQuery statements per batch and those sent while recording completions (the per-completion "
           "check that issue 15 replaced by one grouped query per batch), then US dollars per batch.", ""]
    head = "| items | source | statements | on completions | per 1,000 items | API calls | ours $ |"
    sep = "|---:|---|---:|---:|---:|---:|---:|"
    if baseline:
        head += " COUNT per completion $ (statements) |"
        sep += "---:|"
    out += [head + " (a) per-item MERGE $ | (b) per-item tables $ |", sep + "---:|---:|"]
    for s in sorted(m["sizes"].values(), key=lambda s: s["items"]):
        d, n = s["dollars"], s["items"]
        st = d["bigquery_queries"]["statements"]
        row = (f"| {n:,} | {s['source']} | {_n(st)} | {_n(s.get('completion_queries', 0))} | {1000 * st / n:,.2f} "
               f"| {_n(s['api_calls']['total'])} | {_usd(d['total_usd'])} |")
        if baseline:
            b = baseline["sizes"].get(str(n))
            row += f" {_usd(b['total_usd'])} ({_n(b['statements'])}, {b['source']}) |" if b else " - |"
        row += (f" {_usd(s['designs']['a_per_item_merge']['total_usd'])} "
                f"| {_usd(s['designs']['b_per_item_tables']['total_usd'])} |")
        out.append(row)
    if baseline:
        out += ["", f"COUNT per completion: `{baseline['file']}` ({baseline['at']}, {', '.join(baseline['commits'])}; "
                f"counted at {', '.join(f'{x:,}' for x in baseline['counted_sizes'])} items), modelled by this "
                "code with the same assumptions."]
    return out + [""]


def _templates(run: dict) -> dict:
    out: dict = {}
    for per_proc in run["doc_templates"].values():
        for t, v in per_proc.items():
            cur = out.setdefault(t, {"writes": 0, "docs": 0})
            cur["writes"] += v["writes"]
            cur["docs"] += v["docs"]
    return out


def plot(m: dict, baseline: dict | None = None) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (make bench-install): no plot", file=sys.stderr)
        return
    sizes = sorted(m["sizes"].values(), key=lambda s: s["items"])
    xs = [s["items"] for s in sizes]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    series = {"ours": ([s["dollars"]["total_usd"] for s in sizes], [s["api_calls"]["total"] for s in sizes])}
    if baseline:
        got = [baseline["sizes"].get(str(x)) for x in xs]
        if all(got):
            series["baseline"] = ([b["total_usd"] for b in got], [b["api_calls"] for b in got])
    for key in ("a_per_item_merge", "b_per_item_tables"):
        series[key] = ([s["designs"][key]["total_usd"] for s in sizes], [s["designs"][key]["api_calls"] for s in sizes])
    for key, (usd, calls) in series.items():
        a1.plot(xs, usd, marker="o", label=DESIGNS[key])
        a2.plot(xs, calls, marker="o", label=DESIGNS[key])
    counted = [s["items"] for s in sizes if s["source"] == "counted"]
    for ax, title, ylabel in ((a1, "US dollars per batch", "USD (list prices)"),
                              (a2, "API calls per batch", "requests to Google APIs")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        for x in counted:
            ax.axvline(x, color="grey", lw=0.5, ls=":")
        ax.set_xlabel("batch size (items); dotted: counted sizes")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = RESULTS_DIR / "cost.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
