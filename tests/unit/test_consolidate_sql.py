"""Unit tests for the pure parts of batchline.adapters.merge: schema checks, SQL text, inventory."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from google.cloud.bigquery import SchemaField

from batchline.adapters import manifests, merge_sql, staging
from batchline.adapters import merge as c
from batchline.domain.errors import ConsolidationError, SchemaIncompatible
from batchline.domain.schema import (
    MAIN_TABLE_COLUMNS,
    MAIN_TABLE_INSERT_ONLY,
    MAIN_TABLE_KEY,
    MAIN_TABLE_PARTITION_FIELD,
    main_column_names,
)
from batchline.settings import Settings

S = Settings()
BATCH = "20260115_0123456789ab"
OTHER = "20260115_ba9876543210"
T1 = f"stg_{BATCH}"
T2 = f"stg_{OTHER}"


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
    out = merge_sql.select_lists(main_schema(), {T1: as_staging(main_schema())})
    assert out == {T1: [f"`{n}`" for n in main_column_names()]}


def test_column_order_follows_main_not_staging():
    staging = as_staging(list(reversed(main_schema())))
    assert merge_sql.select_lists(main_schema(), {T1: staging})[T1] == [f"`{n}`" for n in main_column_names()]


@pytest.mark.parametrize(("col", "sql_type"), [("line_value", "FLOAT64")])
def test_missing_nullable_main_column_becomes_typed_null(col, sql_type):
    staging = as_staging([f for f in main_schema() if f.name != col])
    exprs = merge_sql.select_lists(main_schema(), {T1: staging})[T1]
    assert f"CAST(NULL AS {sql_type}) AS `{col}`" in exprs
    assert exprs.index(f"CAST(NULL AS {sql_type}) AS `{col}`") == main_column_names().index(col)
    assert len(exprs) == len(main_column_names())


@pytest.mark.parametrize(("declared", "sql"), [("INTEGER", "INT64"), ("FLOAT", "FLOAT64"), ("BOOLEAN", "BOOL"),
                                               ("TIMESTAMP", "TIMESTAMP")])
def test_typed_null_uses_standard_sql_type(declared, sql):
    main = [SchemaField("k", "STRING", mode="REQUIRED"), SchemaField("extra", declared, mode="NULLABLE")]
    exprs = merge_sql.select_lists(main, {T1: {"k": SchemaField("k", "STRING")}})[T1]
    assert exprs == ["`k`", f"CAST(NULL AS {sql}) AS `extra`"]


def test_typed_null_of_record_and_repeated_columns_carries_the_full_type():
    # `CAST(NULL AS STRUCT)` and a scalar NULL for an ARRAY column are invalid GoogleSQL (tests/sql)
    record = SchemaField("extra", "RECORD", mode="NULLABLE", fields=[
        SchemaField("a", "INTEGER"), SchemaField("b", "STRING", mode="REPEATED")])
    main = [SchemaField("k", "STRING", mode="REQUIRED"), record, SchemaField("tags", "STRING", mode="REPEATED"),
            SchemaField("rows", "RECORD", mode="REPEATED", fields=[SchemaField("x", "FLOAT")])]
    exprs = merge_sql.select_lists(main, {T1: {"k": SchemaField("k", "STRING")}})[T1]
    assert exprs == ["`k`", "CAST(NULL AS STRUCT<`a` INT64, `b` ARRAY<STRING>>) AS `extra`",
                     "CAST(NULL AS ARRAY<STRING>) AS `tags`", "CAST(NULL AS ARRAY<STRUCT<`x` FLOAT64>>) AS `rows`"]


def test_repeated_versus_single_or_different_record_fields_is_a_mismatch():
    main = [SchemaField("k", "STRING", mode="REQUIRED"), SchemaField("tags", "STRING", mode="REPEATED"),
            SchemaField("r", "RECORD", fields=[SchemaField("a", "INT64")])]
    staging = {"k": SchemaField("k", "STRING"), "tags": SchemaField("tags", "STRING"),
               "r": SchemaField("r", "RECORD", fields=[SchemaField("a", "STRING")])}
    with pytest.raises(SchemaIncompatible) as info:
        merge_sql.select_lists(main, {T1: staging})
    assert "tags is STRING, main table has ARRAY<STRING>" in str(info.value)
    assert "r is STRUCT<`a` STRING>, main table has STRUCT<`a` INT64>" in str(info.value)


def test_missing_required_column_raises_naming_table_and_column():
    staging = as_staging([f for f in main_schema() if f.name != "confidence"])
    with pytest.raises(SchemaIncompatible) as info:
        merge_sql.select_lists(main_schema(), {T1: staging})
    assert T1 in str(info.value)
    assert "confidence" in str(info.value)
    assert "REQUIRED" in str(info.value)


def test_type_mismatch_raises_naming_table_column_and_types():
    staging = as_staging(main_schema())
    staging["confidence"] = SchemaField("confidence", "STRING", mode="REQUIRED")
    with pytest.raises(SchemaIncompatible) as info:
        merge_sql.select_lists(main_schema(), {T1: as_staging(main_schema()), T2: staging})
    msg = str(info.value)
    assert T2 in msg and "confidence" in msg and "STRING" in msg and "FLOAT64" in msg
    assert T1 not in msg


def test_extra_column_raises_naming_table_and_column():
    staging = as_staging(main_schema()) | {"rogue_col": SchemaField("rogue_col", "STRING")}
    with pytest.raises(SchemaIncompatible) as info:
        merge_sql.select_lists(main_schema(), {T1: staging})
    assert T1 in str(info.value) and "rogue_col" in str(info.value)


def test_every_problem_of_every_table_is_reported():
    bad1 = {"prediction_id": SchemaField("prediction_id", "STRING"), "n": SchemaField("n", "STRING")}
    bad2 = {"prediction_id": SchemaField("prediction_id", "STRING"), "zzz": SchemaField("zzz", "INT64")}
    with pytest.raises(SchemaIncompatible) as info:
        merge_sql.select_lists(small_main(), {T1: bad1, T2: bad2})
    msg = str(info.value)
    assert f"{T1}: column n is STRING" in msg
    assert f"{T2}: columns not in the main table: zzz" in msg
    assert f"{T2}: lacks REQUIRED column n" in msg


def test_schema_incompatible_is_consolidation_error():
    assert issubclass(SchemaIncompatible, ConsolidationError)


@pytest.mark.parametrize(("a", "b"), [("INTEGER", "INT64"), ("FLOAT", "FLOAT64"), ("BOOLEAN", "BOOL"),
                                      ("int64", "INTEGER"), ("RECORD", "STRUCT")])
def test_type_aliases_are_compatible(a, b):
    main = [SchemaField("k", "STRING", mode="REQUIRED"), SchemaField("x", a, mode="REQUIRED")]
    staging = {"k": SchemaField("k", "STRING"), "x": SchemaField("x", b)}
    assert merge_sql.select_lists(main, {T1: staging})[T1] == ["`k`", "`x`"]
    assert merge_sql._sql_type(a) == merge_sql._sql_type(b)


@pytest.mark.parametrize(("a", "b"), [("INT64", "FLOAT64"), ("NUMERIC", "BIGNUMERIC"), ("DATE", "TIMESTAMP"),
                                      ("DATETIME", "TIMESTAMP"), ("STRING", "BYTES")])
def test_distinct_types_are_incompatible(a, b):
    main = [SchemaField("x", a, mode="NULLABLE")]
    with pytest.raises(SchemaIncompatible, match="column x"):
        merge_sql.select_lists(main, {T1: {"x": SchemaField("x", b)}})


@pytest.mark.parametrize("bad", ["STRING) AS x; DROP TABLE t; --", "ARRAY<INT64>", "INT 64", "INT64`"])
def test_sql_type_rejects_non_alnum(bad):
    with pytest.raises(SchemaIncompatible, match="unsupported column type"):
        merge_sql._sql_type(bad)


def test_backticked_column_names_raise():
    main = [SchemaField("k", "STRING", mode="REQUIRED"), SchemaField("a`b", "STRING")]
    with pytest.raises(ValueError, match="table name"):
        merge_sql.select_lists(main, {T1: {"k": SchemaField("k", "STRING")}})
    with pytest.raises(ValueError):
        merge_sql.merge_sql(S, main, "SELECT 1", {"a`b"})


# -- source_sql / staged_items_sql ----------------------------------------------------------------
def test_source_sql_reads_only_the_pinned_writes_of_the_batch_table():
    exprs = merge_sql.select_lists(small_main(), {T1: as_staging(small_main()[::2])})[T1]
    sql = merge_sql.source_sql(S, BATCH, exprs)
    assert sql == (f"SELECT `prediction_id`, CAST(NULL AS FLOAT64) AS `score`, `n` "
                   f"FROM `{S.project}.{S.staging_dataset}.stg_{BATCH}` S {manifests.join_sql(S)} "
                   f"WHERE S.game_date = @game_date AND S.batch_id = @batch_id")
    assert f"JOIN `{S.manifest_table_id}` M ON M.manifest_item_id = S.staging_item_id AND " \
           f"M.manifest_write_id = S.staging_write_id AND M.manifest_batch_id = @batch_id AND " \
           f"M.manifest_pin = @pin AND M.manifest_kind = 'merge'" in sql
    # the staging columns are joined on, never selected into the MERGE source
    assert "staging_item_id" not in sql.split(" FROM ")[0] and "staging_write_id" not in sql.split(" FROM ")[0]
    # no value is interpolated: the only literal is the manifest row kind
    assert sql.replace("'merge'", "").count("'") == 0 and '"' not in sql
    assert "UNION" not in sql and OTHER not in sql and "UNNEST" not in sql


def test_staged_items_sql_counts_per_item_what_the_merge_source_holds():
    sql = merge_sql.staged_items_sql(S, BATCH)
    assert sql.startswith("SELECT S.staging_item_id AS item_id, COUNT(*) AS n, COUNT(DISTINCT S.prediction_id) AS k ")
    assert f"FROM `{S.project}.{S.staging_dataset}.stg_{BATCH}` S {manifests.join_sql(S)} " in sql
    # exactly the MERGE source's join and filter, so the staged counts describe the rows the MERGE reads
    source = merge_sql.source_sql(S, BATCH, ["`a`"])
    assert sql.split(" FROM ", 1)[1].removesuffix(" GROUP BY S.staging_item_id") == source.split(" FROM ", 1)[1]
    assert sql.endswith(" GROUP BY S.staging_item_id")


@pytest.mark.parametrize("batch", ["x`; DROP", "20260115_0123456789AB", "", f"{BATCH}__a"])
def test_source_sql_rejects_bad_batch_ids(batch):
    with pytest.raises(ValueError):
        merge_sql.source_sql(S, batch, ["`a`"])
    with pytest.raises(ValueError):
        merge_sql.staged_items_sql(S, batch)


@pytest.mark.parametrize("field", ["project", "staging_dataset"])
def test_source_sql_validates_settings_identifiers(field):
    bad = Settings(**{field: "x`; DROP"})
    with pytest.raises(ValueError):
        merge_sql.source_sql(bad, BATCH, ["`a`"])
    with pytest.raises(ValueError):
        merge_sql.staged_items_sql(bad, BATCH)


# -- merge_sql ----------------------------------------------------------------------------------
def _merge(updatable: set[str] | None = None, schema: list[SchemaField] | None = None) -> str:
    schema = schema or main_schema()
    return merge_sql.merge_sql(S, schema, "<SOURCE>", set(main_column_names()) if updatable is None else updatable)


def _clause(sql: str, start: str, end: str | None) -> str:
    tail = sql.split(start, 1)[1]
    return tail.split(end, 1)[0] if end else tail


def test_merge_targets_main_table_and_matches_on_key():
    sql = _merge()
    assert sql.startswith(f"MERGE `{S.project}.{S.main_dataset}.{S.main_table}` T\n")
    assert "USING (\n<SOURCE>\n) S\n" in sql
    assert "ON T.`prediction_id` = S.`prediction_id` AND T.`game_date` = @target_date\n" in sql
    assert MAIN_TABLE_KEY == ("prediction_id",)


def test_every_clause_that_reaches_main_table_rows_names_the_date_partition_with_a_constant():
    """Partition pruning (issue 18 item 5): matched rows are limited by the ON condition, rows the source
    does not match by the NOT MATCHED BY SOURCE condition; both filter the partitioning column on the
    @target_date parameter, never on a value computed from the source (that would scan every
    partition). WHEN NOT MATCHED only inserts (source rows)."""
    sql = _merge()
    on = _clause(sql, "\nON ", "\nWHEN")
    by_source = _clause(sql, "WHEN NOT MATCHED BY SOURCE", " THEN")
    for clause in (on, by_source):
        assert "T.`game_date` = @target_date" in clause
        assert "S.`game_date`" not in clause and "S." not in clause.replace("S.`prediction_id`", "")
    assert "SELECT" not in on
    # the deactivation scope reads only the pin's rows of the manifest table, never the source or main
    assert by_source.count("SELECT manifest_item_id FROM") == 2 and f"`{S.main_table_id}`" not in by_source
    assert MAIN_TABLE_PARTITION_FIELD == "game_date"
    assert any(p.name == "target_date" and p.value == dt.date(2030, 1, 2)
               for p in merge_sql.merge_params("20300102_aaaaaaaaaaaa", dt.date(2030, 1, 2), "g0_a0_" + "0" * 12))


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
        merge_sql.merge_sql(Settings(main_table="t`x"), main_schema(), "<S>", set())
    with pytest.raises(ValueError):
        merge_sql.merge_sql(Settings(main_dataset="a.b"), main_schema(), "<S>", set())


# -- is_dml_rate_limit --------------------------------------------------------------------------
def test_is_dml_rate_limit():
    assert c.is_dml_rate_limit(RuntimeError("400 Too many DML statements outstanding against table x"))
    assert not c.is_dml_rate_limit(RuntimeError("Quota exceeded"))
    assert not c.is_dml_rate_limit(RuntimeError(""))


# -- inventory (see also tests/unit/test_batch_staging.py) ----------------------------------------
def test_inventory_rejects_bad_batch_id():
    """The inventory's one query (staging.staged_writes) refuses a hostile batch id before any SQL."""
    with pytest.raises(ValueError):
        staging.staged_writes(type("BQ", (), {"query_and_wait": lambda *a, **k: pytest.fail("SQL was sent")})(),
                              S, "x'; DROP")


def test_merge_result_as_dict_is_fixed_size():
    """What a MERGE merged is its pin's rows (manifests.py): its record holds counts, never item lists."""
    r = c.MergeResult("j", "g0_a0_" + "0" * 12, 1, 1, 1, 1, 1, 1, 5)
    d = r.as_dict()
    assert d["pin"] == "g0_a0_" + "0" * 12 and d["verified_systems"] == 5
    assert not any(isinstance(v, list | dict) and k != "timings_s" for k, v in d.items()), d
