"""From what the shim counted in one phase (bench/cost_stack.diff) to a usage record per service, and
the bytes BigQuery bills for every statement of it (bench/cost_model.py's minimums over the tables each
statement reads, sized from the batch's own rows). Pure apart from its inputs.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import cost_sql
from cost_model import billed_query_bytes, dml_bytes


def nest(counts: dict[str, float]) -> dict:
    """`a|b|c -> v` flat counts as {a: {b: {c: v}}} (two-part keys as {a: {b: v}})."""
    out: dict = {}
    for key, v in counts.items():
        parts = key.split("|")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = node.get(parts[-1], 0) + v
    return out


def _sum_field(section: dict, name: str) -> float:
    return sum(v.get(name, 0) for v in section.values())


def process_usage(counts: dict[str, float]) -> dict:
    """One process's (or a sum's) counts grouped by service."""
    n = nest(counts)
    rest, grpc_calls = n.get("bq.rest", {}), n.get("grpc", {})
    publish, push, inv = n.get("publish", {}), n.get("push", {}), n.get("inv", {})
    return {
        "bigquery": {"rest_requests": {k: v.get("n", 0) for k, v in sorted(rest.items())},
                     "rest_total": _sum_field(rest, "n"),
                     "jobs": {k: v.get("n", 0) for k, v in sorted(n.get("bq.jobs", {}).items())},
                     "rest_bytes": _sum_field(rest, "req_bytes") + _sum_field(rest, "resp_bytes")},
        "write_api": dict(n.get("wapi", {}).get("append", {})),
        "write_api_by_table": {k: dict(v) for k, v in sorted(n.get("wapi", {}).get("table", {}).items())},
        "firestore": dict(n.get("fs", {})),
        "pubsub": {"publish_requests": _sum_field(publish, "requests"), "messages": _sum_field(publish, "messages"),
                   "publish_message_bytes": _sum_field(publish, "message_bytes"),
                   "publish_billable_bytes": _sum_field(publish, "billable_bytes"),
                   "deliveries": _sum_field(push, "deliveries"),
                   "delivery_message_bytes": _sum_field(push, "message_bytes"),
                   "delivery_billable_bytes": _sum_field(push, "billable_bytes"), "nacks": _sum_field(push, "nacks"),
                   "by_topic": publish, "by_subscription": push},
        "grpc": {k: v.get("n", 0) for k, v in sorted(grpc_calls.items())},
        "grpc_total": _sum_field(grpc_calls, "n"),
        "invocations": {k: {"n": v.get("n", 0), "wall_s": round(v.get("wall_s", 0), 3),
                            "billable_s": round(v.get("billable_s", 0), 3), "queries": v.get("queries", 0)}
                        for k, v in sorted(inv.items())},
        "invocations_total": _sum_field(inv, "n"),
        "wall_s": round(_sum_field(inv, "wall_s"), 3), "billable_s": round(_sum_field(inv, "billable_s"), 3),
        "busy_s": round(n.get("proc", {}).get("busy_s", 0), 3),
    }


MANIFEST_SCANS = ("pin", "table")


@dataclass
class Tables:
    """What the model needs to know about the tables a statement reads: which table id is which, the
    mean logical bytes per value of each column, and the rows of each (main and context: the batch's date
    partition and the whole table; staging: the batch's table; manifest: the batch's pin and the whole
    table, every pin kept for its retention).

    `manifest_scan` says what a statement filtering one pin reads of the manifest table: "pin" (the
    pin's rows: the table is clustered by batch and pin, and BigQuery prunes the blocks a filter on the
    clustering columns excludes, docs/cost.md) or "table" (every pin kept: the upper bound if pruning
    did not help)."""

    main_id: str
    context_id: str
    staging_dataset: str
    col_bytes: dict[str, dict[str, float]]  # role -> column -> mean bytes per value
    partition_rows: dict[str, float]  # role -> rows in the batch's date partition (staging: all rows)
    total_rows: dict[str, float]  # role -> rows in the whole table
    merge_updates_rows: float = 0.0  # rows of the date partition before the MERGE (a re-run of a date)
    manifest_id: str = ""  # <main dataset>.batchline_manifests (issue 15); "" for a run before it
    manifest_scan: str = "pin"

    def role(self, table_id: str) -> str:
        if table_id == self.main_id:
            return "main"
        if table_id == self.context_id:
            return "context"
        if self.manifest_id and table_id == self.manifest_id:
            return "manifest"
        if table_id.split(".")[1] == self.staging_dataset:
            return "staging"
        return "other"

    def row_bytes(self, role: str, cols: list[str] | None = None) -> float:
        b = self.col_bytes.get(role, {})
        return sum(b.values()) if cols is None else sum(b.get(c, 0.0) for c in cols)


@dataclass
class StatementCost:
    kind: str
    per_table: dict[str, float] = field(default_factory=dict)  # role -> bytes processed (before minimums)
    pruned: dict[str, bool] = field(default_factory=dict)
    billed: int = 0


def statement_cost(sql: str, tables: Tables, staging_fill: float = 1.0) -> StatementCost:
    """Bytes one execution of `sql` processes per table and is billed; `staging_fill` is the fraction of
    the staging table's rows present when it ran."""
    kind = cost_sql.statement_kind(sql)
    cost = StatementCost(kind)
    for table_id in cost_sql.tables_referenced(sql):
        role = tables.role(table_id)
        cols = list(tables.col_bytes.get(role, {}))
        if role == "main" and kind == "MERGE":
            pruned = cost_sql.merge_prunes_target(sql)
            read = tables.row_bytes(role, cost_sql.merge_target_columns_read(sql, cols))
            rows = tables.partition_rows[role] if pruned else tables.total_rows[role]  # the date, or every date
            nbytes = dml_bytes(read * rows, tables.merge_updates_rows * tables.row_bytes(role), kind)
        elif role == "staging":
            pruned = False
            nbytes = tables.row_bytes(role, cost_sql.columns_read(sql, cols)) * tables.partition_rows[role] \
                * staging_fill
        elif role in ("main", "context"):
            pruned = cost_sql.select_prunes(sql, table_id)
            rows = tables.partition_rows[role] if pruned else tables.total_rows[role]
            nbytes = tables.row_bytes(role, cost_sql.columns_read(sql, cols)) * rows
        elif role == "manifest":
            pruned = tables.manifest_scan == "pin" and cost_sql.filters_pin(sql)
            rows = tables.partition_rows.get(role, 0.0) if pruned else tables.total_rows.get(role, 0.0)
            nbytes = tables.row_bytes(role, cost_sql.columns_read(sql, cols)) * rows
        else:
            pruned, nbytes = False, 0.0
        cost.per_table[role] = cost.per_table.get(role, 0.0) + nbytes
        cost.pruned[role] = pruned
    if kind in ("CREATE_TABLE", "DROP_TABLE") or kind.startswith("DROP"):
        return cost  # DDL without a query: free
    cost.billed = billed_query_bytes(cost.per_table)
    return cost


def staging_fills(events: list[dict], final_rows: float) -> dict[str, list[float]]:
    """statement hash -> the fraction of the staging table's final rows appended before each of its
    executions started (from the timed append and query events of every process)."""
    appended = 0.0
    fills: dict[str, list[float]] = defaultdict(list)
    for e in events:  # in time order
        if e["e"] == "a":
            appended += e["rows"]
        elif e["e"] == "q":
            fills[e["h"]].append(min(1.0, appended / final_rows) if final_rows else 1.0)
    return fills


def statements_table(procs: dict[str, dict], events: list[dict], tables: Tables) -> list[dict]:
    """Every statement class of a phase: who sent it, its shape, executions, bytes billed in total (each
    execution priced at the staging fill it ran at), and whether it prunes."""
    fills = staging_fills(events, tables.partition_rows.get("staging", 0.0))
    classes: dict[tuple, dict] = {}
    for pname, p in procs.items():
        for h, n in nest(p["counts"]).get("bq.stmt", {}).items():
            text = p["texts"].get(h, {})
            sql, caller = text.get("sql", ""), text.get("caller", "?")
            key = (pname, caller, cost_sql.shape(sql))
            c = classes.setdefault(key, {"process": pname, "caller": caller, "kind": cost_sql.statement_kind(sql),
                                         "shape": cost_sql.shape(sql)[:400], "sql": sql, "n": 0, "billed_bytes": 0,
                                         "processed_bytes": 0.0, "fills": [], "pruned": {}})
            runs = int(n["n"])
            seen = fills.get(h, [])[:runs] or [1.0]
            seen = seen + [seen[-1]] * (runs - len(seen))
            for f in seen:
                sc = statement_cost(sql, tables, f)
                c["billed_bytes"] += sc.billed
                c["processed_bytes"] += sum(sc.per_table.values())
                c["pruned"] = sc.pruned
            c["n"] += runs
            c["fills"].extend(seen)
    out = []
    for c in classes.values():
        fl = c.pop("fills")
        c["mean_staging_fill"] = round(sum(fl) / len(fl), 3) if fl else None
        c["processed_bytes"] = round(c["processed_bytes"])
        out.append(c)
    return sorted(out, key=lambda c: -c["billed_bytes"])


def peak_doc_writes(hot_docs: dict[str, list[float]], window_s: float = 1.0) -> list[dict]:
    """The hottest documents: writes, writes in the busiest `window_s`, and the mean rate over the span
    they were written in (all processes merged)."""
    out = []
    for doc, ts in hot_docs.items():
        ts = sorted(ts)
        best, j = 0, 0
        for i, t in enumerate(ts):
            while ts[j] < t - window_s:
                j += 1
            best = max(best, i - j + 1)
        span = ts[-1] - ts[0] if len(ts) > 1 else 0.0
        out.append({"doc": doc.split("/documents/", 1)[-1], "writes": len(ts), "peak_in_1s": best,
                    "span_s": round(span, 2), "mean_per_s": round(len(ts) / span, 2) if span else None})
    return sorted(out, key=lambda d: (-d["peak_in_1s"], -d["writes"]))[:10]


def total_counts(procs: dict[str, dict]) -> dict[str, float]:
    total: Counter = Counter()
    for p in procs.values():
        total.update(p["counts"])
    return dict(total)
