"""BigQuery: main dataset (main + context tables) and the staging dataset.

Table schemas come from `batchline.schema`, defined once. The staging dataset has a default table
expiration as a last safety net only: the coordinator drops a batch's staging table itself, after verifying
its rows in the main table (F6); the expiration catches what a crash leaves behind.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_gcp as gcp

from batchline import schema
from infra.access import DATASET_LABEL, OPERATOR_ACCESS
from infra.components.iam import ACCESS, operator_slug
from infra.config import BigQueryConfig


def schema_json(columns: tuple[schema.Column, ...]) -> str:
    return json.dumps([c.as_bigquery_json() for c in columns])


class BigQuery(pulumi.ComponentResource):
    def __init__(self, name: str, project: str, cfg: BigQueryConfig, prefix: str,
                 members: dict[str, pulumi.Input[str]], operators: tuple[str, ...] = (),
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:BigQuery", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = {"app": "batchline", "stack-prefix": prefix}
        self.main_dataset = gcp.bigquery.Dataset(
            f"{name}-main", project=project, dataset_id=cfg.main_dataset, location=cfg.location,
            description="batchline predictions (main and context tables)",
            delete_contents_on_destroy=False, labels={**labels, DATASET_LABEL: "main"}, opts=child)
        self.staging_dataset = gcp.bigquery.Dataset(
            f"{name}-staging", project=project, dataset_id=cfg.staging_dataset, location=cfg.staging_location,
            description="batchline staging: one table per batch run; the coordinator drops it after verifying "
                        "its rows in the main table. The default expiration is a last safety net.",
            default_table_expiration_ms=cfg.staging_table_expiration_hours * 3600 * 1000,
            delete_contents_on_destroy=not cfg.deletion_protection, labels={**labels, DATASET_LABEL: "staging"},
            opts=child)
        self.main_table = gcp.bigquery.Table(
            f"{name}-main-table", project=project, dataset_id=self.main_dataset.dataset_id,
            table_id=cfg.main_table, schema=schema_json(schema.MAIN_TABLE_COLUMNS),
            time_partitioning={"type": "DAY", "field": schema.MAIN_TABLE_PARTITION_FIELD},
            clusterings=list(schema.MAIN_TABLE_CLUSTER_FIELDS),
            deletion_protection=cfg.deletion_protection, labels=labels, opts=child)
        self.context_table = gcp.bigquery.Table(
            f"{name}-context-table", project=project, dataset_id=self.main_dataset.dataset_id,
            table_id=cfg.context_table, schema=schema_json(schema.CONTEXT_TABLE_COLUMNS),
            time_partitioning={"type": "DAY", "field": schema.CONTEXT_TABLE_PARTITION_FIELD},
            deletion_protection=cfg.deletion_protection, labels=labels, opts=child)
        datasets = {"main": self.main_dataset, "staging": self.staging_dataset}
        grantees = [(who, members[who], access) for who, access in ACCESS.items() if who in members]
        grantees += [(f"operator-{operator_slug(m)}", m, OPERATOR_ACCESS) for m in operators]
        self.grants = [
            gcp.bigquery.DatasetIamMember(
                f"{name}-{kind}-{who}-{role.split('.')[-1]}", project=project,
                dataset_id=datasets[kind].dataset_id, role=role, member=member,
                opts=pulumi.ResourceOptions(parent=self, replace_with=[datasets[kind]]))
            for who, member, access in grantees
            for kind, role in access.dataset_roles
        ]
        self.register_outputs({
            "main_dataset": self.main_dataset.dataset_id,
            "staging_dataset": self.staging_dataset.dataset_id,
            "main_table": self.main_table.table_id,
            "context_table": self.context_table.table_id,
        })
