"""Unit tests for the pure parts of batchline.consolidate: schema checks, SQL text, inventory."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from google.api_core.exceptions import NotFound
from google.cloud.bigquery import SchemaField

from batchline import consolidate as c
from batchline.schema import MAIN_TABLE_COLUMNS, MAIN_TABLE_INSERT_ONLY, MAIN_TABLE_KEY, main_column_names
from batchline.settings import Settings

S = Settings()
BATCH = "20260115_0123456789ab"
OTHER = "20260115_ba9876543210"
T1 = f"stg_{BATCH}__a"
T2 = f"stg_{BATCH}__b"


def main_schema() -> list[SchemaField]:
    return [SchemaField(col.name, col.type, mode=col.mode) for col in MAIN_TABLE_COLUMNS]


def as_staging(schema: list[SchemaField]) -> dict[str, SchemaField]:
    return {f.name: f for f in schema}


def small_main() -> list[SchemaField]:
    return [SchemaField("prediction_id", "STRING", mode="REQUIRED"),
            SchemaField("score", "FLOAT64", mode="NULLABLE"),
            SchemaField("n", "INT64", mode="REQUIRED")]


# -- select_lists -------------------------------------------------------------------------------
def test_identical_schema_selects_every_column_in_main_order():
    out = c.select_lists(main_schema(), {T1: as_staging(main_schema())})
    assert out == {T1: [f"`{n}`" for n in main_column_names()]}


def test_column_order_follows_main_not_staging():
    staging = as_staging(list(reversed(main_schema())))
    assert c.select_lists(main_schema(), {T1: staging})[T1] == [f"`{n}`" for n in main_column_names()]


@pytest.mark.parametrize(("col", "sql_type"), [("line_value", "FLOAT64")])
def test_missing_nullable_main_column_becomes_typed_null(col, sql_type):
    staging = as_staging([f for f in main_schema() if f.name != col])
    exprs = c.select_lists(main_schema(), {T1: staging})[T1]
    assert f"CAST(NULL AS {sql_type}) AS `{col}`" in exprs
    assert exprs.index(f"CAST(NULL AS {sql_type}) AS `{col}`") == main_column_names().index(col)
    assert len(exprs) == len(main_column_names())


@pytest.mark.parametrize(("declared", "sql"), [("INTEGER", "INT64"), ("FLOAT", "FLOAT64"), ("BOOLEAN", "BOOL"),
                                               ("TIMESTAMP", "TIMESTAMP")])
def test_typed_null_uses_standard_sql_type(declared, sql):
    main = [SchemaField("k", "STRING", mode="REQUIRED"), SchemaField("extra", declared, mode="NULLABLE")]
    exprs = c.select_lists(main, {T1: {"k": SchemaField("k", "STRING")}})[T1]
    assert exprs == ["`k`", f"CAST(NULL AS {sql}) AS `extra`"]


def test_typed_null_of_record_and_repeated_columns_carries_the_full_type():
    # `CAST(NULL AS STRUCT)` and a scalar NULL for an ARRAY column are invalid GoogleSQL (tests/sql)
    record = SchemaField("extra", "RECORD", mode="NULLABLE", fields=[
        SchemaField("a", "INTEGER"), SchemaField("b", "STRING", mode="REPEATED")])
    main = [SchemaField("k", "STRING", mode="REQUIRED"), record, SchemaField("tags", "STRING", mode="REPEATED"),
            SchemaField("rows", "RECORD", mode="REPEATED", fields=[SchemaField("x", "FLOAT")])]
    exprs = c.select_lists(main, {T1: {"k": SchemaField("k", "STRING")}})[T1]
    assert exprs == ["`k`", "CAST(NULL AS STRUCT<`a` INT64, `b` ARRAY<STRING>>) AS `extra`",
                     "CAST(NULL AS ARRAY<STRING>) AS `tags`", "CAST(NULL AS ARRAY<STRUCT<`x` FLOAT64>>) AS `rows`"]


def test_repeated_versus_single_or_different_record_fields_is_a_mismatch():
    main = [SchemaField("k", "STRING", mode="REQUIRED"), SchemaField("tags", "STRING", mode="REPEATED"),
            SchemaField("r", "RECORD", fields=[SchemaField("a", "INT64")])]
    staging = {"k": SchemaField("k", "STRING"), "tags": SchemaField("tags", "STRING"),
               "r": SchemaField("r", "RECORD", fields=[SchemaField("a", "STRING")])}
    with pytest.raises(c.SchemaIncompatible) as info:
        c.select_lists(main, {T1: staging})
    assert "tags is STRING, main table has ARRAY<STRING>" in str(info.value)
    assert "r is STRUCT<`a` STRING>, main table has STRUCT<`a` INT64>" in str(info.value)


def test_missing_required_column_raises_naming_table_and_column():
    staging = as_staging([f for f in main_schema() if f.name != "confidence"])
    with pytest.raises(c.SchemaIncompatible) as info:
        c.select_lists(main_schema(), {T1: staging})
    assert T1 in str(info.value)
    assert "confidence" in str(info.value)
    assert "REQUIRED" in str(info.value)


def test_type_mismatch_raises_naming_table_column_and_types():
    staging = as_staging(main_schema())
    staging["confidence"] = SchemaField("confidence", "STRING", mode="REQUIRED")
    with pytest.raises(c.SchemaIncompatible) as info:
        c.select_lists(main_schema(), {T1: as_staging(main_schema()), T2: staging})
    msg = str(info.value)
    assert T2 in msg and "confidence" in msg and "STRING" in msg and "FLOAT64" in msg
    assert T1 not in msg


def test_extra_column_raises_naming_table_and_column():
    staging = as_staging(main_schema()) | {"rogue_col": SchemaField("rogue_col", "STRING")}
    with pytest.raises(c.SchemaIncompatible) as info:
        c.select_lists(main_schema(), {T1: staging})
    assert T1 in str(info.value) and "rogue_col" in str(info.value)


def test_every_problem_of_every_table_is_reported():
    bad1 = {"prediction_id": SchemaField("prediction_id", "STRING"), "n": SchemaField("n", "STRING")}
    bad2 = {"prediction_id": SchemaField("prediction_id", "STRING"), "zzz": SchemaField("zzz", "INT64")}
    with pytest.raises(c.SchemaIncompatible) as info:
        c.select_lists(small_main(), {T1: bad1, T2: bad2})
    msg = str(info.value)
    assert f"{T1}: column n is STRING" in msg
    assert f"{T2}: columns not in the main table: zzz" in msg
    assert f"{T2}: lacks REQUIRED column n" in msg


def test_schema_incompatible_is_consolidation_error():
    assert issubclass(c.SchemaIncompatible, c.ConsolidationError)


@pytest.mark.parametrize(("a", "b"), [("INTEGER", "INT64"), ("FLOAT", "FLOAT64"), ("BOOLEAN", "BOOL"),
                                      ("int64", "INTEGER"), ("RECORD", "STRUCT")])
def test_type_aliases_are_compatible(a, b):
    main = [SchemaField("k", "STRING", mode="REQUIRED"), SchemaField("x", a, mode="REQUIRED")]
    staging = {"k": SchemaField("k", "STRING"), "x": SchemaField("x", b)}
    assert c.select_lists(main, {T1: staging})[T1] == ["`k`", "`x`"]
    assert c._sql_type(a) == c._sql_type(b)


@pytest.mark.parametrize(("a", "b"), [("INT64", "FLOAT64"), ("NUMERIC", "BIGNUMERIC"), ("DATE", "TIMESTAMP"),
                                      ("DATETIME", "TIMESTAMP"), ("STRING", "BYTES")])
def test_distinct_types_are_incompatible(a, b):
    main = [SchemaField("x", a, mode="NULLABLE")]
    with pytest.raises(c.SchemaIncompatible, match="column x"):
        c.select_lists(main, {T1: {"x": SchemaField("x", b)}})


@pytest.mark.parametrize("bad", ["STRING) AS x; DROP TABLE t; --", "ARRAY<INT64>", "INT 64", "INT64`"])
def test_sql_type_rejects_non_alnum(bad):
    with pytest.raises(c.SchemaIncompatible, match="unsupported column type"):
        c._sql_type(bad)


def test_backticked_column_names_raise():
    main = [SchemaField("k", "STRING", mode="REQUIRED"), SchemaField("a`b", "STRING")]
    with pytest.raises(ValueError, match="table name"):
        c.select_lists(main, {T1: {"k": SchemaField("k", "STRING")}})
    with pytest.raises(ValueError):
        c.merge_sql(S, main, "SELECT 1", {"a`b"})


# -- source_sql ---------------------------------------------------------------------------------
def test_source_sql_is_parameterised_union():
    selects = c.select_lists(small_main(), {T1: as_staging(small_main()), T2: as_staging(small_main()[::2])})
    sql = c.source_sql(S, selects)
    parts = sql.split("\nUNION ALL\n")
    assert len(parts) == 2
    for part, table in zip(parts, (T1, T2), strict=True):
        assert part.startswith("SELECT `prediction_id`, ")
        assert f"FROM `{S.project}.{S.staging_dataset}.{table}`" in part
        assert part.endswith("WHERE game_date = @game_date AND batch_id = @batch_id")
    assert "CAST(NULL AS FLOAT64) AS `score`" in parts[1]
    # no value is interpolated: no literal date, batch id or quote anywhere
    assert "'" not in sql and '"' not in sql
    assert sql.count("@game_date") == 2 and sql.count("@batch_id") == 2


@pytest.mark.parametrize("table", ["t`x", "t;x", "a.b", "t x", ""])
def test_source_sql_rejects_bad_table_names(table):
    with pytest.raises(ValueError):
        c.source_sql(S, {table: ["`a`"]})


@pytest.mark.parametrize("field", ["project", "staging_dataset"])
def test_source_sql_validates_settings_identifiers(field):
    bad = Settings(**{field: "x`; DROP"})
    with pytest.raises(ValueError):
        c.source_sql(bad, {T1: ["`a`"]})


# -- merge_sql ----------------------------------------------------------------------------------
def _merge(updatable: set[str] | None = None, schema: list[SchemaField] | None = None) -> str:
    schema = schema or main_schema()
    return c.merge_sql(S, schema, "<SOURCE>", set(main_column_names()) if updatable is None else updatable)


def _clause(sql: str, start: str, end: str | None) -> str:
    tail = sql.split(start, 1)[1]
    return tail.split(end, 1)[0] if end else tail


def test_merge_targets_main_table_and_matches_on_key():
    sql = _merge()
    assert sql.startswith(f"MERGE `{S.project}.{S.main_dataset}.{S.main_table}` T\n")
    assert "USING (\n<SOURCE>\n) S\n" in sql
    assert "ON T.`prediction_id` = S.`prediction_id`\n" in sql
    assert MAIN_TABLE_KEY == ("prediction_id",)


def test_merge_never_uses_star():
    assert "*" not in _merge()


def test_merge_update_sets_every_updatable_column_except_key_and_insert_only():
    sets = _clause(_merge(), "WHEN MATCHED THEN UPDATE SET ", "\n")
    assigned = re.findall(r"`(\w+)` = S\.`(\w+)`", sets)
    assert all(a == b for a, b in assigned)
    expected = [n for n in main_column_names() if n not in MAIN_TABLE_KEY and n not in MAIN_TABLE_INSERT_ONLY]
    assert [a for a, _ in assigned] == expected
    assert "`prediction_id` =" not in sets
    assert "`created_at` =" not in sets
    assert "`updated_at` = S.`updated_at`" in sets
    assert "`batch_id` = S.`batch_id`" in sets


def test_merge_update_skips_columns_no_staging_table_has():
    sets = _clause(_merge(updatable=set(main_column_names()) - {"line_value"}), "UPDATE SET ", "\n")
    assert "`line_value`" not in sets
    assert "`confidence` = S.`confidence`" in sets


def test_merge_inserts_all_columns_explicitly():
    sql = _merge(updatable=set())  # even columns that are not updatable are inserted
    m = re.search(r"WHEN NOT MATCHED THEN INSERT \((.*)\) VALUES \((.*)\)$", sql, re.M)
    assert m, sql
    cols = [x.strip() for x in m.group(1).split(",")]
    vals = [x.strip() for x in m.group(2).split(",")]
    assert cols == [f"`{n}`" for n in main_column_names()]
    assert vals == [f"S.`{n}`" for n in main_column_names()]


def test_merge_validates_main_table_identifiers():
    with pytest.raises(ValueError):
        c.merge_sql(Settings(main_table="t`x"), main_schema(), "<S>", set())
    with pytest.raises(ValueError):
        c.merge_sql(Settings(main_dataset="a.b"), main_schema(), "<S>", set())


# -- is_dml_rate_limit --------------------------------------------------------------------------
def test_is_dml_rate_limit():
    assert c.is_dml_rate_limit(RuntimeError("400 Too many DML statements outstanding against table x"))
    assert not c.is_dml_rate_limit(RuntimeError("Quota exceeded"))
    assert not c.is_dml_rate_limit(RuntimeError(""))


# -- inventory ----------------------------------------------------------------------------------
@dataclass
class _Table:
    table_id: str


class FakeBQ:
    """Answers get_table for the named tables of the staging dataset, NotFound otherwise."""

    def __init__(self, names: list[str]):
        self.names = names
        self.asked: list[str] = []

    def get_table(self, table_id: str):
        self.asked.append(table_id)
        dataset, name = table_id.rsplit(".", 2)[-2:]
        if dataset == S.staging_dataset and name in self.names:
            return _Table(name)
        raise NotFound(f"no {table_id}")


def test_inventory_classifies_items():
    names = [
        f"stg_{BATCH}__done",  # completed, table present
        f"stg_{BATCH}__lost_event",  # pending but table exists: recovered
        f"stg_{BATCH}__failed_one",  # failed but table exists
        f"stg_{BATCH}__stranger",  # not an item of the batch
        f"stg_{BATCH}__Bad",  # bad suffix
        f"stg_{OTHER}__gone",  # another batch's table for a completed item
        "player_prop_predictions",
    ]
    items = [
        {"item_id": "done", "status": "completed"},
        {"item_id": "gone", "status": "completed"},
        {"item_id": "lost_event", "status": "pending"},
        {"item_id": "failed_one", "status": "failed"},
        {"item_id": "waiting", "status": "pending"},
    ]
    bq = FakeBQ(names)
    inv = c.inventory(bq, S, BATCH, items)
    # asked by name, once per item of the batch: nothing else in the dataset is read
    assert sorted(bq.asked) == sorted(S.staging_table_id(f"stg_{BATCH}__{i['item_id']}") for i in items)
    assert inv.tables == {"done": f"stg_{BATCH}__done", "failed_one": f"stg_{BATCH}__failed_one",
                          "lost_event": f"stg_{BATCH}__lost_event"}
    assert list(inv.tables) == sorted(inv.tables)
    assert inv.expected_completed == ["done", "gone"]
    assert inv.missing_tables == ["gone"]
    assert inv.recovered == ["failed_one", "lost_event"]
    assert inv.failed_items == ["failed_one"]
    assert inv.pending_items == ["lost_event", "waiting"]


def test_inventory_empty_dataset():
    inv = c.inventory(FakeBQ([]), S, BATCH, [{"item_id": "a", "status": "completed"}])
    assert inv.tables == {}
    assert inv.missing_tables == ["a"]
    assert inv.recovered == []


def test_inventory_rejects_bad_batch_id():
    with pytest.raises(ValueError):
        c.inventory(FakeBQ([]), S, "x'; DROP", [])


def test_merge_result_as_dict():
    r = c.MergeResult("j", 1, 1, 1, 1, 1, 1, 5, ["t"])
    assert r.as_dict()["tables"] == ["t"] and r.as_dict()["verified_systems"] == 5
