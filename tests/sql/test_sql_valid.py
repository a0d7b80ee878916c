"""Every statement batchline sends to BigQuery is valid GoogleSQL, judged by Google's ZetaSQL analyzer
in BigQuery's product mode against a catalog built from batchline/domain/schema.py (docs/sql-validation.md).
The emulator runs DuckDB and accepts SQL that BigQuery rejects; this does not."""

from __future__ import annotations

import duckdb
import pytest
import statements as st
from google.cloud import bigquery
from zetasql_service import AnalysisError


@pytest.mark.parametrize("driver", list(st.DRIVERS))
def test_every_statement_the_code_sends_is_valid_googlesql(zetasql, driver):
    run, expected_kinds = st.DRIVERS[driver]
    drive = run()
    kinds = tuple(zetasql.analyze(s.sql, s.params, drive.tables) for s in drive.sent)
    assert kinds == expected_kinds


def test_every_query_call_site_in_the_code_is_exercised_by_a_driver():
    sent = [s for run, _ in st.DRIVERS.values() for s in run().sent]
    missing = st.uncovered(st.call_sites(), sent)
    assert not missing, ("SQL sent from here is not analyzed; add a driver to tests/sql/statements.py "
                         "that runs this code path: " + ", ".join(map(str, missing)))


def test_the_call_site_scan_finds_direct_calls_wrappers_and_their_callers(tmp_path):
    (tmp_path / "batchline").mkdir()
    (tmp_path / "batchline" / "m.py").write_text(
        "def run(bq, sql, params):\n"            # a wrapper: passes its own parameter as the SQL
        "    return bq.query(sql, job_config=params)\n"
        "def direct(bq):\n"
        "    return bq.query_and_wait(\n"
        "        'SELECT 1')\n"
        "def via_wrapper(bq):\n"
        "    def inner():\n"
        "        return run(bq, 'SELECT 2', None)\n"
        "    return inner()\n"
        "def unrelated(db):\n"
        "    return db.collection('x').where('a', '==', 1)\n")
    sites = [(c.function, c.first_line, c.last_line) for c in st.call_sites(root=tmp_path)]
    assert sites == [("run", 2, 2), ("direct", 4, 5), ("inner", 8, 8)]


def test_a_staging_table_lacking_a_nullable_column_is_merged_with_a_typed_null(zetasql):
    drive = st.merge_with_typed_nulls()
    merge = next(s for s in drive.sent if s.sql.startswith("MERGE"))
    assert "CAST(NULL AS FLOAT64) AS `line_value`" in merge.sql
    assert zetasql.analyze(merge.sql, merge.params, drive.tables) == "merge"


def test_the_census_counts_query_and_wait_call_sites_too():
    sites = {(c.path, c.function) for c in st.call_sites()}
    # these run SQL only through Client.query_and_wait: a census of `.query(` alone would miss them
    assert ("batchline/adapters/staging.py", "staged_writes") in sites
    assert ("batchline/adapters/merge.py", "merge_staging") in sites  # the staged counts
    assert ("batchline/adapters/merge.py", "_verify") in sites  # the verification after the MERGE


def _sent(drive: st.Drive, start: str) -> st.Sent:
    return next(s for s in drive.sent if s.sql.startswith(start))


def test_the_merge_reads_only_the_pinned_writes_of_the_one_batch_staging_table(zetasql):
    """Issue 15: the manifest is the pin's rows in the manifest table, joined by (batch, pin), never a
    query parameter that grows with the batch: every parameter of the MERGE is a scalar."""
    drive = st.merge_batch_staging()
    merge = _sent(drive, "MERGE")
    staged = drive.sent[0]
    manifest_table = f"`{st.S.manifest_table_id}`"
    for s in (merge, staged):
        assert f"`{st.STAGING_TABLE_ID}` S JOIN {manifest_table} M" in s.sql
        assert "manifest_pin = @pin AND M.manifest_kind = 'merge'" in s.sql
        assert {p.name: p.value for p in s.params}["pin"] == st.PIN
        assert all(isinstance(p, bigquery.ScalarQueryParameter) for p in s.params), s.params
    assert "manifest_kind = 'scheduled'" in merge.sql, "the schedule, for NOT MATCHED BY SOURCE, from the pin too"
    assert "UNION" not in merge.sql and "UNNEST" not in merge.sql
    assert zetasql.analyze(merge.sql, merge.params, drive.tables) == "merge"


def test_the_catalog_knows_the_staging_and_manifest_columns_and_the_pin_type_matters(zetasql):
    drive = st.merge_batch_staging()
    merge = _sent(drive, "MERGE")
    without_staging_columns = {**drive.tables, st.STAGING_TABLE_ID: st.MAIN_SCHEMA}
    with pytest.raises(AnalysisError, match="staging_item_id"):
        zetasql.analyze(merge.sql, merge.params, without_staging_columns)
    ints = [bigquery.ScalarQueryParameter("pin", "INT64", 1) if p.name == "pin" else p for p in merge.params]
    with pytest.raises(AnalysisError, match="STRING, INT64"):
        zetasql.analyze(merge.sql, ints, drive.tables)


def test_both_verification_variants_are_analyzed(zetasql):
    for drive, only in ((st.merge_batch_staging(), False), (st.merge_orphans_verifying_only_their_items(), True)):
        (verify,) = [s for s in drive.sent if "ARRAY_AGG(DISTINCT system_id)" in s.sql]
        assert ("manifest_pin = @pin" in verify.sql) == only
        assert zetasql.analyze(verify.sql, verify.params, drive.tables) == "query"


def test_the_delete_staging_fault_deletes_one_items_rows_of_the_batch_table(zetasql):
    drive = st.chaos_delete_staged_item()
    (delete,) = drive.sent
    assert delete.sql.startswith(f"DELETE FROM `{st.STAGING_TABLE_ID}` WHERE staging_item_id = @item_id")
    assert [(p.name, p.value) for p in delete.params] == [("item_id", "player_a")]
    with pytest.raises(AnalysisError, match="staging_item_id"):
        zetasql.analyze(delete.sql, delete.params, {st.STAGING_TABLE_ID: st.MAIN_SCHEMA})


# -- the analyzer is a real judge: what it must reject ------------------------------------------------
@pytest.mark.parametrize(("duckdb_only", "why", "googlesql"), [
    ("SELECT 1::INT64 AS n", 'got ":"', "SELECT CAST(1 AS INT64) AS n"),
    ("SELECT 'Ab' ILIKE 'a%' AS m", "got string literal", "SELECT LOWER('Ab') LIKE 'a%' AS m"),
    ("SELECT LIST_VALUE(1, 2) AS l", "Function not found: LIST_VALUE", "SELECT [1, 2] AS l"),
    ("SELECT a FROM (SELECT 1 AS a) ORDER BY ALL", "Unexpected keyword ALL",
     "SELECT a FROM (SELECT 1 AS a) ORDER BY 1"),
])
def test_duckdb_only_sql_is_rejected_and_its_googlesql_spelling_accepted(zetasql, duckdb_only, why, googlesql):
    assert duckdb.sql(duckdb_only).fetchall(), "runs on DuckDB, the emulator's engine"
    with pytest.raises(AnalysisError, match=why):
        zetasql.analyze(duckdb_only)
    assert zetasql.analyze(googlesql) == "query"


def test_bigquery_product_mode_rejects_types_bigquery_lacks(zetasql):
    for t in ("UINT64", "INT32", "FLOAT"):
        with pytest.raises(AnalysisError, match="not supported|Type not found"):
            zetasql.analyze(f"SELECT CAST(1 AS {t}) AS n")


def test_a_typed_null_of_the_wrong_type_is_rejected_by_the_merge_insert(zetasql):
    drive = st.merge_with_typed_nulls()
    merge = next(s for s in drive.sent if s.sql.startswith("MERGE"))
    broken = merge.sql.replace("CAST(NULL AS FLOAT64)", "CAST(NULL AS DATE)")
    assert broken != merge.sql
    with pytest.raises(AnalysisError, match="line_value|DATE"):
        zetasql.analyze(broken, merge.params, drive.tables)


def test_unknown_names_and_mistyped_parameters_are_rejected(zetasql):
    drive = st.dispatch_expected_items()
    (sent,) = drive.sent
    with pytest.raises(AnalysisError, match="Unrecognized name"):
        zetasql.analyze(sent.sql.replace("player_lookup,", "player_id,"), sent.params)
    with pytest.raises(AnalysisError, match="not found"):
        zetasql.analyze(sent.sql.replace("player_game_context", "player_game_contexts"), sent.params)
    with pytest.raises(AnalysisError, match="No matching signature"):
        zetasql.analyze(sent.sql, [bigquery.ScalarQueryParameter("d", "INT64", 20300115)])
    # as in BigQuery, a STRING parameter is coerced to DATE (parameters coerce like literals)
    assert zetasql.analyze(sent.sql, [bigquery.ScalarQueryParameter("d", "STRING", "2030-01-15")]) == "query"
    with pytest.raises(AnalysisError, match="Query parameter 'd' not found"):
        zetasql.analyze(sent.sql, [])


MAIN = "`batchline-local.predictions.player_prop_predictions`"


@pytest.mark.parametrize("sql", [
    # constructs BigQuery accepts that need BIGQUERY_FEATURES or the two-way table registration
    f"SELECT player_lookup FROM {MAIN} WHERE game_date = @d QUALIFY ROW_NUMBER() OVER (PARTITION BY "
    "player_lookup ORDER BY updated_at DESC) = 1",  # this ZetaSQL build wants WHERE/GROUP BY with QUALIFY
    f"MERGE {MAIN} T USING (SELECT * FROM {MAIN}) S ON T.prediction_id = S.prediction_id "
    "WHEN NOT MATCHED BY SOURCE AND T.game_date = @d THEN DELETE",
    "SELECT * EXCEPT (batch_id) FROM batchline-local.predictions.player_prop_predictions",
    "SELECT SAFE_CAST(line_value AS NUMERIC), DATE_TRUNC(game_date, WEEK(MONDAY)) "
    "FROM `batchline-local`.predictions.player_prop_predictions",
    "CREATE TABLE `batchline-local.batchline_staging.t` PARTITION BY game_date CLUSTER BY player_lookup "
    f"AS SELECT * FROM {MAIN} WHERE game_date = @d",
])
def test_bigquery_constructs_beyond_ours_are_accepted(zetasql, sql):
    assert zetasql.analyze(sql, [bigquery.ScalarQueryParameter("d", "DATE", st.DATE)])


def test_the_merge_restricted_to_the_date_partition_is_valid_googlesql(zetasql):
    """Issue 18 item 5: the ON and NOT MATCHED BY SOURCE conditions filter the partitioning column on a
    constant parameter (so BigQuery prunes to the batch's partition), and ZetaSQL accepts it."""
    drive = st.merge_batch_staging()
    merge = next(s for s in drive.sent if s.sql.startswith("MERGE"))
    assert "AND T.`game_date` = @target_date\nWHEN MATCHED" in merge.sql
    assert "WHEN NOT MATCHED BY SOURCE AND T.`game_date` = @target_date" in merge.sql
    assert zetasql.analyze(merge.sql, merge.params, drive.tables) == "merge"
