"""The rule on BigQuery: the datasets and tables the stack config names, the main table in the shared
schema (batchline.domain.schema), partitioned and clustered, staging that expires tables, one location."""

from __future__ import annotations

import json

from infra.resource_types import T_DATASET, T_TABLE
from infra.rules.engine import Finding, Needs, rule
from infra.shared import schema
from infra.view import Stack


@rule("bigquery", mandatory=False, needs=Needs.CONFIG)
def bigquery(stack: Stack) -> list[Finding]:
    """Staging dataset expires tables (safety net), main table matches the shared schema, partitioned
    and clustered; both datasets in one location."""
    out: list[Finding] = []
    bq = stack.config.bigquery
    ds = {d.props.get("datasetId"): d for d in stack.of_type(T_DATASET)}
    staging, main = ds.get(bq.staging_dataset), ds.get(bq.main_dataset)
    if staging is None or main is None:
        return [Finding("bigquery", "datasets", f"missing main or staging dataset: have {sorted(ds)}")]
    if not staging.props.get("defaultTableExpirationMs"):
        out.append(Finding("bigquery", staging.name, "staging dataset has no default table expiration"))
    if main.props.get("defaultTableExpirationMs"):
        out.append(Finding("bigquery", main.name, "main dataset must not expire tables"))
    if staging.props.get("location") != main.props.get("location"):
        out.append(Finding("bigquery", staging.name, "staging and main datasets in different locations"))
    tables = {t.props.get("tableId"): t for t in stack.of_type(T_TABLE)}
    t = tables.get(bq.main_table)
    if t is None:
        return out + [Finding("bigquery", bq.main_table, "main table not created")]
    cols = [c["name"] for c in json.loads(t.props.get("schema", "[]"))]
    if cols != schema.main_column_names():
        out.append(Finding("bigquery", t.name, "main table schema differs from batchline.domain.schema"))
    if (t.props.get("timePartitioning") or {}).get("field") != schema.MAIN_TABLE_PARTITION_FIELD:
        out.append(Finding("bigquery", t.name, "main table not partitioned on the shared partition field"))
    if list(t.props.get("clusterings") or []) != list(schema.MAIN_TABLE_CLUSTER_FIELDS):
        out.append(Finding("bigquery", t.name, "main table not clustered on the shared cluster fields"))
    if bq.context_table not in tables:
        out.append(Finding("bigquery", bq.context_table, "context table not created"))
    return out


RULES = (bigquery,)
