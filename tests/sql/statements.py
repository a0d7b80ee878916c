"""Every SQL statement batchline sends to BigQuery, captured from the code that sends it.

Each driver runs a real code path (merge_staging, expected_items, ledger.compute, ...) against
RecordingBigQuery, a stand-in client that answers just enough for the path to complete and records
each query's text, its typed parameters (from the QueryJobConfig the code built) and the code lines
it came from. So the statements analyzed are the ones the code sends, not copies of them, and
`call_sites()` can check that every `.query(` / `.query_and_wait(` in the code was reached by some driver.
"""

from __future__ import annotations

import ast
import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from google.api_core import exceptions as gexc
from google.cloud.bigquery import SchemaField

import batchline
from batchline.adapters import freshness, manifests, queries, staging
from batchline.adapters import merge as consolidate
from batchline.domain import ids
from batchline.domain.errors import ConsolidationError
from batchline.domain.evidence import take_inventory
from batchline.domain.item_shape import EXPECTED_PAIRS
from batchline.domain.schema import MAIN_TABLE_COLUMNS
from batchline.flows import batch_facts, consolidation_result, dispatch, ledger, reconcile
from batchline.local import chaos, provision
from batchline.ops import views
from batchline.settings import Settings

# The checkout whose batchline is imported (not necessarily this test file's, e.g. another worktree
# on PYTHONPATH): its code is both run by the drivers and scanned for call sites.
REPO = Path(batchline.__file__).resolve().parents[1]
CODE_DIRS = ("batchline", "functions")  # where statements sent to BigQuery may be built
QUERY_METHODS = {"query", "query_and_wait"}  # google.cloud.bigquery.Client methods that run SQL

S = Settings()
BATCH = "20300115_0123456789ab"
DATE = dt.date(2030, 1, 15)
MAIN_SCHEMA = [SchemaField(c.name, c.type, mode=c.mode) for c in MAIN_TABLE_COLUMNS]
# An older staging table: lacks the NULLABLE line_value, so the MERGE selects a typed NULL for it.
WITHOUT_LINE_VALUE = [f for f in MAIN_SCHEMA if f.name != "line_value"]


@dataclass
class Sent:
    sql: str
    params: list
    frames: tuple[tuple[str, int], ...]  # (repo-relative file, line) of each code frame on the stack


class _Row(dict):
    """A result row: row["col"] and row.items(), as bigquery.Row offers."""


@dataclass
class _Job:
    job_id: str
    rows: list
    num_dml_affected_rows: int = 0

    def result(self):
        return [_Row(r) for r in self.rows]


class RecordingBigQuery:
    """Records queries; tables it knows exist with the given schema and row count."""

    def __init__(self, tables: dict[str, tuple[list[SchemaField], int]], answer: Callable[[str], list[dict]]):
        self.tables = tables
        self.answer = answer
        self.sent: list[Sent] = []

    def query(self, query, job_config=None, job_id=None, **_kw):
        params = list(job_config.query_parameters) if job_config is not None else []
        self.sent.append(Sent(query, params, _code_frames()))
        affected = sum(n for _, n in self.tables.values()) if query.lstrip().startswith("MERGE") else 0
        return _Job(job_id or f"job_{len(self.sent)}", self.answer(query), affected)

    def query_and_wait(self, query, job_config=None, **kw):
        return self.query(query, job_config=job_config, **kw).result()

    def get_table(self, table_id):
        if table_id not in self.tables:
            raise gexc.NotFound(table_id)
        schema, rows = self.tables[table_id]
        return SimpleNamespace(schema=list(schema), num_rows=rows)

    def get_job(self, job_id):
        raise gexc.NotFound(job_id)

    def list_jobs(self, **_kw):
        return []


def _code_frames() -> tuple[tuple[str, int], ...]:
    out = []
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename).resolve()
        if path.is_relative_to(REPO) and path.relative_to(REPO).parts[0] in CODE_DIRS:
            out.append((path.relative_to(REPO).as_posix(), frame.f_lineno))
        frame = frame.f_back
    return tuple(out)


@dataclass
class Drive:
    sent: list[Sent]
    tables: dict[str, list[SchemaField]] = field(default_factory=dict)  # full table id -> schema, for the catalog


STAGING_TABLE_ID = S.staging_table_id(ids.batch_staging_table(BATCH))
WRITE_A, WRITE_B = "a" * 32, "b" * 32
PIN = "g0_a0_" + "0" * 12


def _merge(staging_main_schema: list[SchemaField] = MAIN_SCHEMA, main_schema: list[SchemaField] = MAIN_SCHEMA,
           manifest: dict[str, str] | None = None, verify_only_merged: bool = False,
           fail_transiently: bool = False) -> Drive:
    """merge_staging over the batch staging table, created (staging.staging_schema) from the main
    table's schema as it was at dispatch: `staging_main_schema`."""
    manifest = manifest or {"player_a": WRITE_A, "player_b": WRITE_B}
    rows_each = 3
    tables = {S.main_table_id: (main_schema, 0),
              STAGING_TABLE_ID: (staging.staging_schema(staging_main_schema), rows_each * len(manifest))}

    def answer(sql: str) -> list[dict]:
        if "AS dup" in sql:
            return [{"dup": 0}]
        # staged_items_sql and verify_sql: per item, the same counts, so the verification passes
        return [{"item_id": i, "n": rows_each, "k": rows_each, "systems": ["s1"]} for i in manifest]

    bq = RecordingBigQuery(tables, answer)
    if fail_transiently:
        with pytest.raises(ConsolidationError, match="affected 0 rows"):
            consolidate.merge_staging(bq, S, BATCH, DATE, PIN, len(manifest), fail_transiently=True)
    else:
        consolidate.merge_staging(bq, S, BATCH, DATE, PIN, len(manifest), verify_only_merged=verify_only_merged)
    return Drive(bq.sent, {table_id: schema for table_id, (schema, _) in tables.items()})


def merge_batch_staging() -> Drive:
    return _merge()


def merge_orphans_verifying_only_their_items() -> Drive:
    return _merge(manifest={"player_a": WRITE_A}, verify_only_merged=True)


def merge_with_typed_nulls() -> Drive:
    """A staging table created before the main table gained the NULLABLE line_value."""
    return _merge(staging_main_schema=WITHOUT_LINE_VALUE)


# The main table after a schema change added a NULLABLE RECORD and a REPEATED column that an older
# staging table lacks (F5): the typed NULLs must carry the full STRUCT<...> / ARRAY<...> types.
NEWER_MAIN_SCHEMA = [*MAIN_SCHEMA,
                     SchemaField("inputs", "RECORD", mode="NULLABLE", fields=[
                         SchemaField("minutes", "FLOAT64"), SchemaField("home", "BOOL"),
                         SchemaField("recent", "INT64", mode="REPEATED")]),
                     SchemaField("tags", "STRING", mode="REPEATED")]


def merge_with_newer_record_and_repeated_columns() -> Drive:
    return _merge(staging_main_schema=MAIN_SCHEMA, main_schema=NEWER_MAIN_SCHEMA)


def merge_injected_transient_failure() -> Drive:
    """The `merge_transient` fault sends a failing statement in place of the MERGE. The stand-in
    runs it without error, so the 0-row check then fails the consolidation, as it must."""
    return _merge(fail_transiently=True)


def _clients(bq: RecordingBigQuery) -> SimpleNamespace:
    return SimpleNamespace(settings=S, bq=bq, fs=None, batches=_Batches())


def dispatch_expected_items() -> Drive:
    bq = RecordingBigQuery({}, lambda sql: [])
    dispatch.expected_items(_clients(bq), DATE)
    return Drive(bq.sent)


def coordinator_kept_previous() -> Drive:
    bq = RecordingBigQuery({}, lambda sql: [])
    consolidation_result.kept_previous(_clients(bq), BATCH, DATE, set())
    return Drive(bq.sent)


def reconcile_complete_players() -> Drive:
    bq = RecordingBigQuery({}, lambda sql: [])
    reconcile.complete_players(_clients(bq), DATE)
    return Drive(bq.sent)


def manifests_read() -> Drive:
    """What the pins of a batch merged (orphans, batch_facts, a redelivered consolidation)."""
    bq = RecordingBigQuery({}, lambda sql: [{"pin": PIN, "item_id": "player_a", "write_id": WRITE_A,
                                             "recovered": False}])
    assert manifests.read(bq, S, BATCH, [PIN]) == {PIN: {"player_a": WRITE_A}}
    return Drive(bq.sent)


def consolidate_inventory() -> Drive:
    """The inventory's one GROUP BY over the batch staging table (staging.staged_writes, which the
    claims' verification, the consolidation's cleanup and the orphan reconciliation also call)."""
    whole = sorted(EXPECTED_PAIRS)
    bq = RecordingBigQuery({}, lambda sql: [{"item_id": "player_a", "write_id": WRITE_A, "n": len(whole),
                                             "k": len(whole), "pairs": whole}])
    inv = take_inventory(staging.staged_writes(bq, S, BATCH), [{"item_id": "player_a", "status": "completed",
                                                "write_id": WRITE_A, "row_count": len(whole)}])
    assert inv.manifest() == {"player_a": WRITE_A}
    return Drive(bq.sent, {STAGING_TABLE_ID: staging.staging_schema(MAIN_SCHEMA)})


def chaos_delete_staged_item() -> Drive:
    bq = RecordingBigQuery({}, lambda sql: [])
    chaos.delete_staged_item(_clients(bq), BATCH, "player_a")
    return Drive(bq.sent, {STAGING_TABLE_ID: staging.staging_schema(MAIN_SCHEMA)})


def provision_seed_context() -> Drive:
    bq = RecordingBigQuery({}, lambda sql: [])
    provision.seed_context(bq, S, DATE, [])
    return Drive(bq.sent)


class _Batches:
    """The BatchStore reads a report makes (batch_facts.gather)."""

    def __init__(self, _fs=None):
        pass

    def get_batch(self, batch_id):
        return {"batch_id": batch_id, "game_date": DATE.isoformat(), "status": "consolidated",
                "created_at": dt.datetime(2030, 1, 15)}

    def items(self, batch_id):
        return []

    def active_batch_of(self, game_date):
        return None


def _facts_answer(sql: str) -> list[dict]:
    if "AS dup" in sql:
        return [{"dup": 0}]
    return [{"n": 0, "k": 0}] if sql.startswith("SELECT COUNT(*)") else []


def _gather_patched(mp) -> None:
    """Firestore and Pub/Sub reads of batch_facts.gather replaced: they send no SQL (the batch
    store is the clients' `batches`, _Batches)."""
    mp.setattr(batch_facts, "dead_lettered_items", lambda clients, batch_id, items: set())
    mp.setattr(batch_facts, "dead_letters_in_subscription", lambda clients, batch_id: set())


def ledger_compute() -> Drive:
    bq = RecordingBigQuery({}, _facts_answer)
    with pytest.MonkeyPatch.context() as mp:
        _gather_patched(mp)
        ledger.compute(_clients(bq), BATCH, 1.0)
    return Drive(bq.sent)


def chaos_judge() -> Drive:
    bq = RecordingBigQuery({}, lambda sql: [])
    out = chaos.Outcome(chaos.Schedule(0, 1, "seed=1", 0, False, False, None), BATCH, "consolidated", 1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ledger, "dead_letters_in_subscription", lambda clients, batch_id: set())  # Pub/Sub, no SQL
        mp.setattr(chaos, "BatchStore", _Batches)
        chaos.judge(_clients(bq), {}, DATE, {"player_a"}, out)
    return Drive(bq.sent)


def freshness_check() -> Drive:
    bq = RecordingBigQuery({}, lambda sql: [{"n": 1, "newest": dt.datetime.now(dt.UTC)}])
    freshness.check_fresh(SimpleNamespace(settings=S, bq=bq, fs=None), DATE)
    return Drive(bq.sent)


def orphans_active_owners() -> Drive:
    bq = RecordingBigQuery({}, lambda sql: [])
    queries.active_owners(bq, S, DATE)
    return Drive(bq.sent)


def ops_audit() -> Drive:
    bq = RecordingBigQuery({}, _facts_answer)
    with pytest.MonkeyPatch.context() as mp:
        _gather_patched(mp)
        views.audit(_clients(bq), BATCH)
    return Drive(bq.sent)


# driver -> the resolved statement kinds it must send, in order (so a driver cannot silently stop
# exercising what it claims to cover).
DRIVERS: dict[str, tuple[Callable[[], Drive], tuple[str, ...]]] = {
    # merge_staging: staged counts of the manifest, the MERGE, per-item verification, active duplicates
    "merge_batch_staging": (merge_batch_staging, ("query", "merge", "query", "query")),
    "merge_with_typed_nulls": (merge_with_typed_nulls, ("query", "merge", "query", "query")),
    "merge_with_newer_record_and_repeated_columns": (merge_with_newer_record_and_repeated_columns,
                                                     ("query", "merge", "query", "query")),
    "merge_injected_transient_failure": (merge_injected_transient_failure, ("query", "query", "query", "query")),
    "merge_orphans_verifying_only_their_items": (merge_orphans_verifying_only_their_items,
                                                 ("query", "merge", "query", "query")),
    "dispatch_expected_items": (dispatch_expected_items, ("query",)),
    "coordinator_kept_previous": (coordinator_kept_previous, ("query",)),
    "reconcile_complete_players": (reconcile_complete_players, ("query",)),
    "consolidate_inventory": (consolidate_inventory, ("query",)),
    "manifests_read": (manifests_read, ("query",)),
    "chaos_delete_staged_item": (chaos_delete_staged_item, ("delete",)),
    "provision_seed_context": (provision_seed_context, ("delete",)),
    "ledger_compute": (ledger_compute, ("query", "query", "query", "query")),
    "chaos_judge": (chaos_judge, ("query",)),
    "ops_audit": (ops_audit, ("query", "query", "query", "query")),
    "freshness_check": (freshness_check, ("query",)),
    "orphans_active_owners": (orphans_active_owners, ("query",)),
}


@dataclass(frozen=True)
class CallSite:
    path: str
    function: str
    first_line: int
    last_line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.first_line} in {self.function}()"


def call_sites(root: Path = REPO) -> list[CallSite]:
    """Every call that runs SQL on BigQuery: `<x>.query(...)` / `.query_and_wait(...)`, plus calls of
    wrappers, i.e. functions that pass one of their own parameters to such a call as the SQL."""
    trees = {p.relative_to(root).as_posix(): ast.parse(p.read_text(), str(p))
             for d in CODE_DIRS for p in sorted((root / d).rglob("*.py"))}

    def name(call: ast.Call) -> str | None:
        f = call.func
        return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None

    def calls(tree) -> dict[int, tuple[ast.Call, str]]:
        """Each call with its innermost enclosing function (ast.walk is breadth-first, so an inner
        function's calls are reassigned after its outer function's)."""
        owner = {id(n): (n, "<module>") for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            owner |= {id(n): (n, fn.name) for n in ast.walk(fn) if isinstance(n, ast.Call)}
        return owner

    wrappers = set()
    for tree in trees.values():
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            params = {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
            for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call) and name(n) in QUERY_METHODS):
                sql = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "query"), None)
                if isinstance(sql, ast.Name) and sql.id in params:
                    wrappers.add(fn.name)
    sites = [CallSite(path, fn, call.lineno, call.end_lineno or call.lineno)
             for path, tree in trees.items() for call, fn in calls(tree).values()
             if name(call) in QUERY_METHODS | wrappers]
    return sorted(sites, key=lambda s: (s.path, s.first_line))


def uncovered(sites: list[CallSite], sent: list[Sent]) -> list[CallSite]:
    seen = {frame for s in sent for frame in s.frames}
    return [c for c in sites
            if not any(p == c.path and c.first_line <= line <= c.last_line for p, line in seen)]
