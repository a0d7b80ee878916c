"""The one staging table per batch run: its name, its schema, the manifest of writes consolidation
merges (inventory, the pinned manifest's rows) and the per-item verification after the MERGE. Pure: BigQuery is a
small in-memory double answering the statements these functions send (the statements themselves are
judged by ZetaSQL in tests/sql)."""

from __future__ import annotations

import datetime as dt

import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigquery
from google.cloud.bigquery import SchemaField
from hypothesis import given, settings
from hypothesis import strategies as st

from batchline.adapters import manifests, merge_sql, staging
from batchline.adapters import merge as c
from batchline.domain import evidence, ids
from batchline.domain.errors import ConsolidationError
from batchline.domain.evidence import StagedWrite, take_inventory
from batchline.domain.item_shape import EXPECTED_PAIRS
from batchline.domain.schema import MAIN_TABLE_COLUMNS
from batchline.settings import Settings

S = Settings()
BATCH = "20300115_0123456789ab"
OTHER = "20300115_ba9876543210"
DATE = dt.date(2030, 1, 15)
MAIN_SCHEMA = [SchemaField(col.name, col.type, mode=col.mode) for col in MAIN_TABLE_COLUMNS]
W = {k: k * 32 for k in "0123456789abcdef"}  # write ids by their repeated hex digit: W["a"] < W["c"] < W["f"]
WHOLE = len(EXPECTED_PAIRS)  # the rows of an item's complete write: one per configured system x prop


def _pairs(n: int) -> frozenset[str]:
    """The system/prop pairs of a write of n distinct rows: the first n configured pairs, then others."""
    names = sorted(EXPECTED_PAIRS) + [f"extra_{j}/points" for j in range(max(0, n - WHOLE))]
    return frozenset(names[:n])


def _sw(item: str, write: str, n: int, k: int | None = None) -> StagedWrite:
    return StagedWrite(item, write, n, n if k is None else k, _pairs(n if k is None else k))


# -- names -------------------------------------------------------------------------------------------------
batch_ids = st.builds(lambda d, h: f"{d:%Y%m%d}_{h}", st.dates(dt.date(2000, 1, 1), dt.date(2100, 12, 31)),
                      st.from_regex(r"[0-9a-f]{12}", fullmatch=True))


@settings(max_examples=200, deadline=None)
@given(batch=batch_ids)
def test_the_batch_staging_table_name_round_trips(batch):
    name = ids.batch_staging_table(batch)
    assert ids.validate_table_name(name) == name and name.startswith(ids.STAGING_PREFIX)
    assert ids.batch_of_staging_table(name) == batch


@pytest.mark.parametrize("table", [
    f"stg_{BATCH}__lebron",  # a per-item table of the old design
    f"stg_{BATCH}_",
    f"cmb_{BATCH}__0001",  # an old scratch table
    f"STG_{BATCH}",
    f"stg_{BATCH.upper()}",
    f"stg_{BATCH[:-1]}",
    f"stg_{BATCH}0",
    f"stg__{BATCH}",
    f"x_stg_{BATCH}",
    BATCH,
    "stg_",
    "player_prop_predictions",
    "",
])
def test_names_that_are_not_a_batch_staging_table_map_to_no_batch(table):
    assert ids.batch_of_staging_table(table) is None


def test_each_batch_run_has_its_own_staging_table():
    assert ids.batch_staging_table(BATCH) != ids.batch_staging_table(OTHER)
    assert ids.batch_of_staging_table(ids.batch_staging_table(OTHER)) == OTHER


# -- schema ------------------------------------------------------------------------------------------------
def test_the_staging_schema_is_the_main_schema_plus_two_required_id_columns():
    out = staging.staging_schema(MAIN_SCHEMA)
    assert out[:len(MAIN_SCHEMA)] == MAIN_SCHEMA
    extra = out[len(MAIN_SCHEMA):]
    assert [(f.name, f.field_type, f.mode) for f in extra] == [
        ("staging_item_id", "STRING", "REQUIRED"), ("staging_write_id", "STRING", "REQUIRED")]
    assert tuple(f.name for f in extra) == staging.STAGING_COLUMNS


@pytest.mark.parametrize("reserved", list(staging.STAGING_COLUMNS))
def test_a_main_table_that_already_has_a_reserved_column_is_refused(reserved):
    main = [*MAIN_SCHEMA, SchemaField(reserved, "STRING")]
    with pytest.raises(ValueError, match=reserved):
        staging.staging_schema(main)


class _CreatingBigQuery:
    def __init__(self):
        self.created: list[tuple[bigquery.Table, bool]] = []

    def get_table(self, table_id):
        assert table_id == S.main_table_id, "the schema comes from the main table, live"
        return type("T", (), {"schema": MAIN_SCHEMA})()

    def create_table(self, table, exists_ok=False):
        self.created.append((table, exists_ok))


def test_create_batch_table_creates_the_batch_table_idempotently_from_the_live_main_schema():
    bq = _CreatingBigQuery()
    assert staging.create_batch_table(bq, S, BATCH) == f"stg_{BATCH}"
    ((table, exists_ok),) = bq.created
    assert exists_ok, "a resumed dispatch creates it again"
    assert f"{table.project}.{table.dataset_id}.{table.table_id}" == S.staging_table_id(f"stg_{BATCH}")
    assert [f.name for f in table.schema] == [f.name for f in staging.staging_schema(MAIN_SCHEMA)]


# -- the statements' answers, in memory -----------------------------------------------------------------
class _StagedBigQuery:
    """The batch staging table as a list of writes (item, write id, rows: distinct rows of the first
    configured system/prop pairs, `_pairs`); answers writes_sql's GROUP BY (the inventory, and the
    claims' bulk verification), and raises NotFound when the table does not exist."""

    def __init__(self, writes: list[tuple[str, str, int]] | None):
        self.writes = writes
        self.sent: list[tuple[str, dict]] = []

    def query_and_wait(self, sql, job_config=None, **_kw):
        params = {p.name: p.values if hasattr(p, "values") else p.value
                  for p in (job_config.query_parameters if job_config else [])}
        self.sent.append((sql, params))
        if self.writes is None:
            raise gexc.NotFound(f"stg_{BATCH}")
        assert f"`{S.project}.{S.staging_dataset}.stg_{BATCH}`" in sql
        keys = getattr(self, "keys", {})

        def row(i: str, w: str, n: int) -> dict:
            k = keys.get((i, w), n)
            return {"item_id": i, "write_id": w, "n": n, "k": k, "pairs": sorted(_pairs(k)) or None}

        assert sql == staging.writes_sql(S, BATCH)
        return [row(i, w, n) for i, w, n in self.writes]

    def get_table(self, table_id):
        return bigquery.Table(table_id)


def test_staged_writes_groups_writes_by_item():
    bq = _StagedBigQuery([("a", W["1"], 3), ("a", W["2"], 4), ("b", W["1"], 5)])
    out = staging.staged_writes(bq, S, BATCH)
    assert out == {"a": {W["1"]: _sw("a", W["1"], 3), W["2"]: _sw("a", W["2"], 4)}, "b": {W["1"]: _sw("b", W["1"], 5)}}
    assert staging.staged_writes(_StagedBigQuery(None), S, BATCH) == {}, "no table: nothing staged"


# -- inventory ---------------------------------------------------------------------------------------------
def _item(item_id: str, status: str, write_id: str | None = None, row_count: int | None = None) -> dict:
    return {"item_id": item_id, "status": status, "write_id": write_id, "row_count": row_count}


def test_the_recorded_write_of_a_completed_item_is_merged_when_intact_even_if_others_have_higher_ids():
    bq = _StagedBigQuery([("done", W["1"], WHOLE), ("done", W["f"], WHOLE), ("done", W["a"], 3)])
    inv = take_inventory(staging.staged_writes(bq, S, BATCH), [_item("done", "completed", W["1"], WHOLE)])
    assert inv.writes == {"done": _sw("done", W["1"], WHOLE)}
    assert inv.manifest() == {"done": W["1"]}
    assert inv.recovered == [] and inv.missing_writes == [] and inv.expected_completed == ["done"]
    assert inv.abandoned_writes == 2 and inv.staged_rows_total == 2 * WHOLE + 3


@pytest.mark.parametrize("status", ["pending", "failed"])
def test_an_item_without_a_completion_is_recovered_from_a_complete_write(status):
    # complete writes are told apart by the write id, so every run of the inventory picks the same one;
    # a short write (W["f"]) is never merged, whatever its id
    bq = _StagedBigQuery([("lost", W["a"], WHOLE), ("lost", W["c"], WHOLE), ("lost", W["f"], 2)])
    inv = take_inventory(staging.staged_writes(bq, S, BATCH), [_item("lost", status)])
    assert inv.manifest() == {"lost": W["c"]}
    assert inv.recovered == ["lost"] and inv.missing_writes == [] and inv.expected_completed == []
    assert (inv.failed_items, inv.pending_items) == (([], ["lost"]) if status == "pending" else (["lost"], []))
    assert inv.abandoned_writes == 2


def test_recovery_prefers_a_write_without_repeated_prediction_ids_and_both_callers_pick_the_same():
    dup = _sw("x", W["f"], WHOLE + 1, WHOLE)  # more rows, but one prediction id twice
    clean = _sw("x", W["1"], WHOLE)
    short = _sw("x", W["e"], WHOLE - 2)  # a true write, 2 predictions short (issue 17.2)
    candidates = {dup.write_id: dup, clean.write_id: clean, short.write_id: short}
    assert evidence.choose_write(_item("x", "pending"), candidates) == (clean, False)
    assert evidence.choose_write(_item("x", "completed", W["1"], 5), candidates) == (clean, True)
    assert evidence.choose_write(_item("x", "completed", W["1"], 4), candidates) == (clean, False), "count differs"
    assert evidence.choose_write(_item("x", "failed", W["1"], 5), candidates) == (clean, False), "not completed"
    assert evidence.choose_write(_item("x", "pending"), {dup.write_id: dup}) == (None, False), "never merged"
    assert evidence.choose_write(_item("x", "completed", W["f"], 6), {dup.write_id: dup}) == (None, False)
    assert evidence.choose_write(_item("x", "completed", W["e"], WHOLE - 2), candidates) == (clean, False), \
        "a recorded short write is not trusted either"
    assert evidence.choose_write(_item("x", "pending"), {short.write_id: short}) == (None, False), "never merged short"


def test_an_item_whose_every_write_repeats_a_prediction_id_is_not_merged_and_named():
    bq = _StagedBigQuery([("ok", W["1"], WHOLE), ("bad", W["2"], WHOLE)])
    bq.keys = {("bad", W["2"]): WHOLE - 1}
    inv = take_inventory(staging.staged_writes(bq, S, BATCH),
                         [_item("ok", "completed", W["1"], WHOLE), _item("bad", "completed", W["2"], WHOLE)])
    assert inv.manifest() == {"ok": W["1"]} and inv.unmergeable == ["bad"] and inv.missing_writes == ["bad"]


def test_a_completed_item_whose_recorded_write_is_gone_is_recovered_and_reported_missing():
    bq = _StagedBigQuery([("gone", W["2"], WHOLE), ("gone", W["3"], 1)])
    inv = take_inventory(staging.staged_writes(bq, S, BATCH), [_item("gone", "completed", W["1"], WHOLE)])
    assert inv.manifest() == {"gone": W["2"]}
    assert inv.recovered == ["gone"] and inv.missing_writes == ["gone"]


def test_a_recorded_write_holding_other_than_the_claimed_rows_is_not_trusted():
    bq = _StagedBigQuery([("short", W["1"], WHOLE - 1), ("short", W["2"], WHOLE)])
    inv = take_inventory(staging.staged_writes(bq, S, BATCH), [_item("short", "completed", W["1"], WHOLE)])
    assert inv.manifest() == {"short": W["2"]}
    assert inv.recovered == ["short"] and inv.missing_writes == ["short"]


def test_the_inventory_of_a_whole_batch():
    bq = _StagedBigQuery([
        ("done", W["1"], WHOLE), ("done", W["9"], WHOLE),  # recorded + a redelivery's abandoned write
        ("gone", W["4"], WHOLE),  # recorded write W["3"] vanished
        ("failed_one", W["5"], WHOLE),
        ("short_one", W["8"], WHOLE - 1),  # its only write is short: never merged
        ("stranger", W["6"], 7),  # not an item of the batch
    ])
    items = [_item("done", "completed", W["1"], WHOLE), _item("gone", "completed", W["3"], WHOLE),
             _item("vanished", "completed", W["7"], WHOLE), _item("failed_one", "failed"), _item("waiting", "pending"),
             _item("short_one", "pending")]
    inv = take_inventory(staging.staged_writes(bq, S, BATCH), items)
    assert inv.manifest() == {"done": W["1"], "failed_one": W["5"], "gone": W["4"]}
    assert list(inv.manifest()) == sorted(inv.manifest())
    assert inv.expected_completed == ["done", "gone", "vanished"]
    assert inv.missing_writes == ["gone", "vanished"]
    assert inv.recovered == ["failed_one", "gone"]
    assert inv.failed_items == ["failed_one"] and inv.pending_items == ["short_one", "waiting"]
    assert inv.unknown_items == ["stranger"] and "stranger" not in inv.writes and inv.unmergeable == ["short_one"]
    assert inv.staged_rows_total == 5 * WHOLE - 1 + 7, "every staged row, merged or not"


def test_abandoned_writes_count_every_write_of_the_batch_items_not_merged():
    bq = _StagedBigQuery([("a", W["1"], WHOLE), ("a", W["2"], WHOLE), ("a", W["3"], WHOLE), ("b", W["4"], 1),
                          ("b", W["5"], WHOLE), ("stranger", W["6"], 1), ("stranger", W["7"], 1)])
    inv = take_inventory(staging.staged_writes(bq, S, BATCH),
                         [_item("a", "completed", W["2"], WHOLE), _item("b", "pending")])
    assert inv.manifest() == {"a": W["2"], "b": W["5"]}
    assert inv.abandoned_writes == 3, "writes of items the batch does not have are unknown, not abandoned"
    assert inv.unknown_items == ["stranger"]


def test_an_inventory_without_a_staging_table_merges_nothing_and_reports_completed_items_missing():
    inv = take_inventory(staging.staged_writes(_StagedBigQuery(None), S, BATCH),
                         [_item("a", "completed", W["1"], 3), _item("b", "pending")])
    assert inv.writes == {} and inv.manifest() == {}
    assert inv.missing_writes == ["a"] and inv.recovered == [] and inv.unknown_items == []
    assert (inv.staged_rows_total, inv.abandoned_writes) == (0, 0)


# -- the pinned manifest's rows (batchline/adapters/manifests.py) ----------------------------------------------------
PIN = "g0_a0_" + "0" * 12
NOW = dt.datetime(2030, 1, 15, 12, tzinfo=dt.UTC)


def test_a_pin_has_a_merge_row_per_item_and_a_scheduled_row_per_scheduled_item():
    rows = manifests.rows(BATCH, PIN, {"b": W["2"], "a": W["1"]}, ["b"], ["a", "b", "c", "a"], NOW)
    merge = [(r["manifest_item_id"], r["manifest_write_id"], r["manifest_recovered"]) for r in rows
             if r["manifest_kind"] == "merge"]
    assert merge == [("a", W["1"], False), ("b", W["2"], True)]
    assert [r["manifest_item_id"] for r in rows if r["manifest_kind"] == "scheduled"] == ["a", "b", "c"]
    assert {(r["manifest_batch_id"], r["manifest_pin"], r["pinned_at"]) for r in rows} == {
        (BATCH, PIN, NOW.isoformat())}
    assert manifests.rows(BATCH, PIN, {}, (), (), NOW) == []


@pytest.mark.parametrize("manifest", [
    {"a": "x' OR TRUE OR '"},
    {"a": W["1"][:-1]},
    {"a": W["a"].upper()},
    {"a": W["1"] + "/b"},
    {"a": ""},
    {"a": None},
    {"A": W["1"]},
    {"a/b": W["1"]},
])
def test_a_manifest_entry_that_is_not_an_item_and_a_write_id_is_refused(manifest):
    with pytest.raises(ValueError, match="invalid (write|item) id"):
        manifests.rows(BATCH, PIN, {"ok": W["0"], **manifest}, (), (), NOW)


@pytest.mark.parametrize("pin", ["g0_a0", "g0_a0_" + "0" * 11, "x' OR '1", "G0_A0_" + "0" * 12, "g1_a1_" + "Z" * 12])
def test_a_pin_that_is_not_a_pin_is_refused(pin):
    with pytest.raises(ValueError, match="invalid manifest pin"):
        manifests.rows(BATCH, pin, {"ok": W["0"]}, (), (), NOW)


# -- per-item verification after the MERGE -----------------------------------------------------------------
class _Job:
    def __init__(self, job_id: str, affected: int = 0, rows: list[dict] | None = None):
        self.job_id, self.num_dml_affected_rows, self.rows = job_id, affected, rows or []

    def result(self):
        return self.rows


class _MergingBigQuery:
    """What merge_staging calls: get_table (main and staging schema), query_and_wait (staged counts,
    verification), get_job + query (run_merge_once) and query (active duplicates, via query_one)."""

    def __init__(self, staged: dict[str, int], in_main: dict[str, int], affected: int):
        self.staged, self.in_main, self.affected = staged, in_main, affected
        self.tables = {S.main_table_id: MAIN_SCHEMA,
                       S.staging_table_id(ids.batch_staging_table(BATCH)): staging.staging_schema(MAIN_SCHEMA)}
        self.calls: list[str] = []

    def get_table(self, table_id):
        self.calls.append("get_table")
        return type("T", (), {"schema": self.tables[table_id]})()

    def get_job(self, job_id):
        raise gexc.NotFound(job_id)

    def query_and_wait(self, sql, job_config=None, **_kw):
        if sql == merge_sql.staged_items_sql(S, BATCH):
            self.calls.append("staged")
            return [{"item_id": i, "n": n, "k": n} for i, n in self.staged.items()]
        main = f"`{S.main_table_id}`"
        assert sql in (merge_sql.verify_sql(main), merge_sql.verify_sql(main, manifests.items_sql(S))), sql
        self.calls.append("verify")
        return [{"item_id": i, "n": n, "k": n, "systems": ["s1"]} for i, n in self.in_main.items()]

    def query(self, sql, job_config=None, job_id=None, **_kw):
        if sql.startswith("MERGE"):
            self.calls.append("merge")
            return _Job(job_id, self.affected)
        assert sql == merge_sql.active_duplicates_sql(f"`{S.main_table_id}`"), sql
        self.calls.append("duplicates")
        return _Job("q", rows=[{"dup": 0}])


MANIFEST = {"player_a": W["a"], "player_b": W["b"], "player_c": W["c"]}
STAGED = {"player_a": 4, "player_b": 5, "player_c": 6}


def test_a_merge_whose_items_all_match_their_staged_writes_is_verified():
    bq = _MergingBigQuery(STAGED, dict(STAGED), affected=15)
    result = c.merge_staging(bq, S, BATCH, DATE, PIN, len(MANIFEST))
    assert bq.calls == ["get_table", "get_table", "staged", "merge", "verify", "duplicates"]
    assert (result.verified_rows, result.verified_items, result.pin) == (15, 3, PIN)


@pytest.mark.parametrize("in_main", [
    {**STAGED, "player_b": 4},  # one row of player_b missing
    {**STAGED, "player_b": 6},  # one row too many
    {"player_a": 4, "player_c": 6},  # player_b's rows absent
    {"player_a": 5, "player_b": 4, "player_c": 6},  # the same total, but not the same items' rows
])
def test_one_item_whose_count_in_main_differs_fails_the_consolidation_naming_it(in_main):
    bq = _MergingBigQuery(STAGED, in_main, affected=15)
    with pytest.raises(ConsolidationError, match="verification failed") as err:
        c.merge_staging(bq, S, BATCH, DATE, PIN, len(MANIFEST))
    msg = str(err.value)
    assert f"player_b: staged 5, main {in_main.get('player_b', 0)} rows" in msg
    assert "player_c" not in msg, "only the items that differ are named"
    assert ("player_a" in msg) == (in_main["player_a"] != STAGED["player_a"])


def test_an_orphan_merge_verifies_only_its_items():
    bq = _MergingBigQuery({"player_b": 5}, {"player_b": 5}, affected=5)
    result = c.merge_staging(bq, S, BATCH, DATE, PIN, 1, verify_only_merged=True)
    assert result.verified_items == 1
    bq = _MergingBigQuery({"player_b": 5}, {"player_b": 3}, affected=5)
    with pytest.raises(ConsolidationError, match="player_b: staged 5, main 3 rows"):
        c.merge_staging(bq, S, BATCH, DATE, PIN, 1, verify_only_merged=True)
