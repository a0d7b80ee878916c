"""What the analyzer is told about BigQuery: language options, the catalog, parameter types.

Language: product mode PRODUCT_EXTERNAL (BigQuery's: no protos, no unsigned or 32-bit integers, no
FLOAT) and the features below. The catalog: batchline's tables from batchline/domain/schema.py under the
names the code uses. ZetaSQL does not split a backquoted path: `p.d.t` is ONE identifier "p.d.t",
while `p`.d.t or p.d.t are three. BigQuery resolves both spellings to the same table, so each table
is registered both ways: under its full dotted name at the root, and as table t of catalog d nested
in catalog p. A name the catalog lacks (wrong dataset, table or column) is an analysis error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.cloud import bigquery
from google.cloud.bigquery import SchemaField

from batchline.domain.schema import CONTEXT_TABLE_COLUMNS, MAIN_TABLE_COLUMNS, MANIFEST_TABLE_COLUMNS, Column
from batchline.settings import Settings

Schema = Sequence[SchemaField]

# The GoogleSQL language features BigQuery documents, defined once. Deliberately NOT ZetaSQL's
# maximum set: that includes what BigQuery lacks (nanosecond timestamps, protos, GROUP BY ROLLUP
# variants, ...), which would let SQL BigQuery rejects pass. Our statements need only a few of these
# (e.g. FEATURE_V_1_3_ALLOW_DASHES_IN_TABLE_NAME for `my-project.ds.t`); the rest keep the dialect
# honest for statements added later. A name missing from the installed ZetaSQL build is an error.
BIGQUERY_FEATURES: tuple[str, ...] = (
    "FEATURE_ANALYTIC_FUNCTIONS",             # window functions
    "FEATURE_TABLESAMPLE",
    "FEATURE_DML_UPDATE_WITH_JOIN",           # UPDATE ... FROM
    "FEATURE_TABLE_VALUED_FUNCTIONS",
    "FEATURE_CREATE_TABLE_FUNCTION",
    "FEATURE_CREATE_AGGREGATE_FUNCTION",
    "FEATURE_TEMPLATE_FUNCTIONS",             # ANY TYPE arguments of SQL UDFs
    "FEATURE_CREATE_TABLE_PARTITION_BY",
    "FEATURE_CREATE_TABLE_CLUSTER_BY",
    "FEATURE_CREATE_TABLE_NOT_NULL",
    "FEATURE_CREATE_TABLE_FIELD_ANNOTATIONS",
    "FEATURE_CREATE_TABLE_AS_SELECT_COLUMN_LIST",
    "FEATURE_CREATE_TABLE_LIKE",
    "FEATURE_CREATE_TABLE_COPY",
    "FEATURE_CREATE_TABLE_CLONE",
    "FEATURE_CREATE_SNAPSHOT_TABLE",
    "FEATURE_CREATE_VIEW_WITH_COLUMN_LIST",
    "FEATURE_ALTER_TABLE_RENAME_COLUMN",
    "FEATURE_ALTER_COLUMN_SET_DATA_TYPE",
    "FEATURE_UNENFORCED_PRIMARY_KEYS",
    "FEATURE_NUMERIC_TYPE",
    "FEATURE_BIGNUMERIC_TYPE",
    "FEATURE_JSON_TYPE",
    "FEATURE_JSON_ARRAY_FUNCTIONS",
    "FEATURE_JSON_VALUE_EXTRACTION_FUNCTIONS",
    "FEATURE_GEOGRAPHY",
    "FEATURE_INTERVAL_TYPE",
    "FEATURE_PARAMETERIZED_TYPES",            # STRING(10), NUMERIC(10, 2)
    "FEATURE_NAMED_ARGUMENTS",
    "FEATURE_V_1_1_WITH_ON_SUBQUERY",
    "FEATURE_V_1_1_SELECT_STAR_EXCEPT_REPLACE",
    "FEATURE_V_1_1_ORDER_BY_IN_AGGREGATE",
    "FEATURE_V_1_1_LIMIT_IN_AGGREGATE",
    "FEATURE_V_1_1_HAVING_IN_AGGREGATE",
    "FEATURE_V_1_1_NULL_HANDLING_MODIFIER_IN_AGGREGATE",
    "FEATURE_V_1_1_NULL_HANDLING_MODIFIER_IN_ANALYTIC",
    "FEATURE_V_1_1_CAST_DIFFERENT_ARRAY_TYPES",
    "FEATURE_V_1_1_FOR_SYSTEM_TIME_AS_OF",    # time travel
    "FEATURE_V_1_2_CIVIL_TIME",               # DATETIME, TIME
    "FEATURE_V_1_2_SAFE_FUNCTION_CALL",       # SAFE.fn()
    "FEATURE_V_1_2_WEEK_WITH_WEEKDAY",
    "FEATURE_V_1_3_ALLOW_DASHES_IN_TABLE_NAME",
    "FEATURE_V_1_3_DECIMAL_ALIAS",
    "FEATURE_V_1_3_WITH_RECURSIVE",
    "FEATURE_V_1_3_DATE_TIME_CONSTRUCTORS",
    "FEATURE_V_1_3_DATE_ARITHMETICS",
    "FEATURE_V_1_3_EXTENDED_DATE_TIME_SIGNATURES",
    "FEATURE_V_1_3_ADDITIONAL_STRING_FUNCTIONS",
    "FEATURE_V_1_3_NULLS_FIRST_LAST_IN_ORDER_BY",
    "FEATURE_V_1_3_INLINE_LAMBDA_ARGUMENT",
    "FEATURE_V_1_3_PIVOT",
    "FEATURE_V_1_3_UNPIVOT",
    "FEATURE_V_1_3_QUALIFY",
    "FEATURE_V_1_3_IS_DISTINCT",
    "FEATURE_V_1_3_FORMAT_IN_CAST",
    "FEATURE_V_1_3_COLUMN_DEFAULT_VALUE",
    "FEATURE_V_1_3_REMOTE_FUNCTION",
)

# Statement kinds BigQuery runs that batchline may send; anything else is rejected as unsupported.
STATEMENT_KINDS: tuple[str, ...] = (
    "RESOLVED_QUERY_STMT",
    "RESOLVED_MERGE_STMT",
    "RESOLVED_INSERT_STMT",
    "RESOLVED_UPDATE_STMT",
    "RESOLVED_DELETE_STMT",
    "RESOLVED_CREATE_TABLE_STMT",
    "RESOLVED_CREATE_TABLE_AS_SELECT_STMT",
)

# BigQuery column / parameter type names (legacy aliases included) -> ZetaSQL TypeKind.
TYPE_KINDS = {
    "STRING": "TYPE_STRING", "BYTES": "TYPE_BYTES", "INT64": "TYPE_INT64", "INTEGER": "TYPE_INT64",
    "FLOAT64": "TYPE_DOUBLE", "FLOAT": "TYPE_DOUBLE", "NUMERIC": "TYPE_NUMERIC", "BIGNUMERIC": "TYPE_BIGNUMERIC",
    "BOOL": "TYPE_BOOL", "BOOLEAN": "TYPE_BOOL", "DATE": "TYPE_DATE", "DATETIME": "TYPE_DATETIME",
    "TIME": "TYPE_TIME", "TIMESTAMP": "TYPE_TIMESTAMP", "GEOGRAPHY": "TYPE_GEOGRAPHY", "JSON": "TYPE_JSON",
}


def set_type(protos, type_proto, field: SchemaField) -> None:
    """A column's full type: ARRAY<...> for mode REPEATED, STRUCT<...> of its subfields for RECORD."""
    if field.mode == "REPEATED":
        type_proto.type_kind = protos.enum("zetasql.TypeKind", "TYPE_ARRAY")
        set_type(protos, type_proto.array_type.element_type,
                 SchemaField(field.name, field.field_type, mode="NULLABLE", fields=field.fields))
    elif field.field_type.upper() in ("RECORD", "STRUCT"):
        type_proto.type_kind = protos.enum("zetasql.TypeKind", "TYPE_STRUCT")
        for sub in field.fields:
            set_type(protos, type_proto.struct_type.field.add(field_name=sub.name).field_type, sub)
    elif field.field_type.upper() in TYPE_KINDS:
        type_proto.type_kind = protos.enum("zetasql.TypeKind", TYPE_KINDS[field.field_type.upper()])
    else:
        raise ValueError(f"no ZetaSQL type for BigQuery type {field.field_type!r} (extend TYPE_KINDS)")


def schema(columns: Sequence[Column]) -> list[SchemaField]:
    return [SchemaField(c.name, c.type, mode=c.mode) for c in columns]


def language_options(protos, lo) -> None:
    """Fill a LanguageOptionsProto with BigQuery's product mode, features and statement kinds."""
    lo.product_mode = protos.enum("zetasql.ProductMode", "PRODUCT_EXTERNAL")
    lo.enabled_language_features.extend(protos.enum("zetasql.LanguageFeature", f) for f in BIGQUERY_FEATURES)
    lo.supported_statement_kinds.extend(protos.enum("zetasql.ResolvedNodeKind", k) for k in STATEMENT_KINDS)


def batchline_tables(settings: Settings, tables: dict[str, Schema] | None = None) -> dict[str, Schema]:
    """Full table id -> schema: the main, context and manifest tables as batchline/domain/schema.py defines them,
    updated with `tables` (staging and scratch tables, or a main table with a newer live schema)."""
    return {settings.main_table_id: schema(MAIN_TABLE_COLUMNS),
            settings.context_table_id: schema(CONTEXT_TABLE_COLUMNS),
            settings.manifest_table_id: schema(MANIFEST_TABLE_COLUMNS), **(tables or {})}


def fill_catalog(protos, catalog, tables: dict[str, Schema]) -> None:
    """Register each `project.dataset.table` both as one dotted name and as nested catalogs."""
    catalog.name = "bigquery"
    language_options(protos, catalog.builtin_function_options.language_options)
    nested: dict[tuple[str, ...], object] = {(): catalog}

    def sub(path: tuple[str, ...]):
        if path not in nested:
            nested[path] = sub(path[:-1]).catalog.add(name=path[-1])
        return nested[path]

    for table_id, cols in tables.items():
        project, dataset, table = table_id.split(".")
        _add_table(protos, catalog.table.add(), table_id, cols)
        _add_table(protos, sub((project, dataset)).table.add(), table, cols)


def _add_table(protos, t, name: str, cols: Schema) -> None:
    t.name = name
    for col in cols:
        set_type(protos, t.column.add(name=col.name).type, col)


def query_parameters(protos, options, params: Iterable) -> None:
    """Declare the statement's named parameters with the types the code gives BigQuery."""
    for p in params:
        if isinstance(p, bigquery.ScalarQueryParameter):
            field = SchemaField(p.name, p.type_)
        elif isinstance(p, bigquery.ArrayQueryParameter) and isinstance(p.array_type, str):
            field = SchemaField(p.name, p.array_type, mode="REPEATED")
        else:
            raise NotImplementedError(f"query parameter not mapped to a ZetaSQL type yet: {p!r}")
        set_type(protos, options.query_parameters.add(name=p.name).type, field)


def analyze_request(protos, sql: str, params: Iterable, tables: dict[str, Schema]):
    req = protos.message("zetasql.local_service.AnalyzeRequest")()
    language_options(protos, req.options.language_options)
    req.options.error_message_mode = protos.enum("zetasql.ErrorMessageMode", "ERROR_MESSAGE_ONE_LINE")
    query_parameters(protos, req.options, params)
    fill_catalog(protos, req.simple_catalog, tables)
    req.sql_statement = sql
    return req
