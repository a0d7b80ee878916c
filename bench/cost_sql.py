"""What a BigQuery request is, from what the client sends: the REST method of a request, the statement
kind of a query, the tables it names and the columns it reads, and whether it prunes a table to one
date partition. Pure functions over strings, shared by the counting shim (bench/cost_counting.py, inside
the function processes) and the cost model; unit-tested in tests/unit/test_cost_sql.py.

The SQL reading is deliberately shallow (regular expressions over the statements batchline builds, not a
parser): table references are the backticked `project.dataset.table` names, a column counts as read
when its name appears as a word, and a table is pruned when the statement filters its partition column
with `game_date = @...`. For a MERGE only the ON and WHEN conditions say which target rows are read.
"""

from __future__ import annotations

import re

_TABLE_REF = re.compile(r"`([A-Za-z0-9_\-]+)\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)`")
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_WORD = r"(?<![A-Za-z0-9_]){}(?![A-Za-z0-9_])"


def rest_kind(method: str, path: str) -> str:
    """The BigQuery REST API method of a request (`jobs.query`, `tables.get`, ...) from its HTTP method and
    URL path; "other" for what this model does not name."""
    m = method.upper()
    p = path.split("?", 1)[0].rstrip("/")
    if "/upload/" in p:
        return "jobs.insert(upload)"
    parts = p.split("/")
    tail = parts[-1]
    if tail == "queries" and m == "POST":
        return "jobs.query"
    if len(parts) >= 2 and parts[-2] == "queries":
        return "jobs.getQueryResults"
    if tail == "jobs":
        return "jobs.insert" if m == "POST" else "jobs.list"
    if len(parts) >= 2 and parts[-2] == "jobs":
        return "jobs.get" if m == "GET" else ("jobs.delete" if m == "DELETE" else "jobs.other")
    if tail == "cancel":
        return "jobs.cancel"
    if tail == "insertAll":
        return "tabledata.insertAll"
    if tail == "data" and len(parts) >= 3 and parts[-3] == "tables":
        return "tabledata.list"
    if tail == "tables":
        return "tables.insert" if m == "POST" else "tables.list"
    if len(parts) >= 2 and parts[-2] == "tables":
        return {"GET": "tables.get", "DELETE": "tables.delete", "PATCH": "tables.patch",
                "PUT": "tables.update"}.get(m, "tables.other")
    if tail == "datasets" or (len(parts) >= 2 and parts[-2] == "datasets"):
        return "datasets." + {"GET": "get", "POST": "insert", "DELETE": "delete"}.get(m, "other")
    return "other"


def statement_kind(sql: str) -> str:
    """SELECT, MERGE, INSERT, UPDATE, DELETE, CREATE_TABLE_AS_SELECT, CREATE_TABLE, DROP_TABLE, ... of a
    statement (the first keywords, comments skipped)."""
    words = _COMMENT.sub(" ", sql).strip().split()
    if not words:
        return "EMPTY"
    first = words[0].upper()
    if first in ("SELECT", "WITH", "("):
        return "SELECT"
    if first == "CREATE":
        head = " ".join(w.upper() for w in words[:8])
        kind = "CREATE_VIEW" if " VIEW " in f" {head} " else "CREATE_TABLE"
        return kind + ("_AS_SELECT" if " AS" in f" {head}" and "SELECT" in sql.upper() else "")
    if first == "DROP":
        return "DROP_" + (words[1].upper() if len(words) > 1 else "")
    return first


def is_mutating_dml(kind: str) -> bool:
    """UPDATE, DELETE and MERGE queue per table (2 running + 20 queued); INSERT has its own limits."""
    return kind in ("UPDATE", "DELETE", "MERGE")


def tables_referenced(sql: str) -> list[str]:
    """Every `project.dataset.table` the statement names, in order of first appearance, once each."""
    seen: dict[str, None] = {}
    for project, dataset, table in _TABLE_REF.findall(sql):
        seen.setdefault(f"{project}.{dataset}.{table}", None)
    return list(seen)


def columns_read(sql: str, columns: list[str]) -> list[str]:
    """The columns of `columns` whose names appear in the statement as words (what BigQuery bills for:
    the referenced columns, not the rows returned)."""
    body = _COMMENT.sub(" ", sql)
    return [c for c in columns if re.search(_WORD.format(re.escape(c)), body)]


def _merge_clauses(sql: str) -> tuple[str, str]:
    """(the ON condition, the WHEN ... THEN conditions) of a MERGE; ("", "") for anything else."""
    body = _COMMENT.sub(" ", sql)
    m = re.search(r"\)\s*S\s+ON\s+(.*?)\s+WHEN\s", body, re.S | re.I) or re.search(
        r"\bON\s+(.*?)\s+WHEN\s", body, re.S | re.I)
    if not m:
        return "", ""
    whens = " ".join(re.findall(r"\bWHEN\s+(.*?)\s+THEN\b", body[m.end() - 5:], re.S | re.I))
    return m.group(1), whens


def merge_target_columns_read(sql: str, columns: list[str], alias: str = "T") -> list[str]:
    """The target columns a MERGE reads to match and filter rows: those named as `T.col` in its ON and WHEN
    conditions (the SET and INSERT lists write columns; writing is billed as the size of the updated
    partitions, not as a scan)."""
    on, whens = _merge_clauses(sql)
    text = f"{on} {whens}"
    return [c for c in columns if re.search(rf"(?<![A-Za-z0-9_]){alias}\.`?{re.escape(c)}`?(?![A-Za-z0-9_])", text)]


def merge_prunes_target(sql: str, partition_column: str = "game_date", alias: str = "T") -> bool:
    """Whether a MERGE limits the target to the partitions its ON condition names (a `T.<partition>`
    filter there). A filter only inside WHEN NOT MATCHED BY SOURCE still lets the statement read every
    partition, so it is not counted as pruning here."""
    on, _ = _merge_clauses(sql)
    return bool(re.search(rf"(?<![A-Za-z0-9_]){alias}\.`?{partition_column}`?\s*(=|IN\b|BETWEEN\b)", on, re.I))


def select_prunes(sql: str, table: str, partition_column: str = "game_date") -> bool:
    """Whether a SELECT filters `table` (named in it) on its partition column by equality with a parameter
    or literal: the pruned statements read one date partition."""
    if table not in tables_referenced(sql):
        return False
    body = _COMMENT.sub(" ", sql)
    return bool(re.search(rf"(?<![A-Za-z0-9_])(\w+\.)?{partition_column}\s*=\s*(@\w+|'[^']*'|DATE)", body, re.I))


def filters_pin(sql: str) -> bool:
    """Whether a statement reads the manifest table (batchline/adapters/manifests.py) only for named pins of a
    batch: it filters both clustering columns, `manifest_batch_id = @...` and `manifest_pin = @...` or
    `IN UNNEST(@...)`, so BigQuery reads the blocks of those pins only."""
    body = _COMMENT.sub(" ", sql)
    batch = re.search(r"manifest_batch_id\s*=\s*@\w+", body)
    pin = re.search(r"manifest_pin\s*(=\s*@\w+|IN\s+UNNEST\(@\w+\))", body, re.I)
    return bool(batch and pin)


def shape(sql: str) -> str:
    """A statement with its per-batch names blanked (backticked tables -> `<dataset>.<table kind>`,
    long hex runs -> <id>), so the same statement of two batches compares equal."""
    out = _TABLE_REF.sub(lambda m: f"`{m.group(2)}.{re.sub(r'_[0-9a-f]{6,}.*$', '_<batch>', m.group(3))}`", sql)
    return re.sub(r"[0-9a-f]{12,}", "<id>", out)
