"""BigQuery: main dataset (main, context and manifest tables) and the staging dataset, and their grants.

Table schemas come from `batchline.domain.schema`, defined once. The staging dataset has a default table
expiration as a last safety net only: the coordinator drops a batch's staging table itself, after verifying
its rows in the main table (F6); the expiration catches what a crash leaves behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra.components.iam import grantees
from infra.config_types import BigQueryConfig
from infra.labels import DATASET_LABEL, stack_labels
from infra.shared import schema


def schema_json(columns: tuple[schema.Column, ...]) -> str:
    return json.dumps([c.as_bigquery_json() for c in columns])


@dataclass
class BigQueryArgs:
    project: str
    cfg: BigQueryConfig
    prefix: str  # the stack's topic prefix (a label)
    members: dict[str, pulumi.Input[str]]  # the functions' `serviceAccount:` members
    operators: tuple[str, ...] = field(default_factory=tuple)


class BigQuery(pulumi.ComponentResource):
    main_dataset: gcp.bigquery.Dataset
    staging_dataset: gcp.bigquery.Dataset
    main_table: gcp.bigquery.Table
    context_table: gcp.bigquery.Table
    manifest_table: gcp.bigquery.Table

    def __init__(self, name: str, args: BigQueryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:BigQuery", name, None, opts)
        self._name, self._args = name, args
        self._labels = stack_labels(args.prefix)
        self._create_datasets()
        self._create_tables()
        self.grants = self._grant_datasets()
        self.register_outputs({
            "main_dataset": self.main_dataset.dataset_id,
            "staging_dataset": self.staging_dataset.dataset_id,
            "main_table": self.main_table.table_id,
            "context_table": self.context_table.table_id,
            "manifest_table": self.manifest_table.table_id,
        })

    def _create_datasets(self) -> None:
        name, project, cfg, child = self._name, self._args.project, self._args.cfg, pulumi.ResourceOptions(parent=self)
        self.main_dataset = gcp.bigquery.Dataset(
            f"{name}-main", project=project, dataset_id=cfg.main_dataset, location=cfg.location,
            description="batchline predictions (main and context tables)",
            delete_contents_on_destroy=False, labels={**self._labels, DATASET_LABEL: "main"}, opts=child)
        self.staging_dataset = gcp.bigquery.Dataset(
            f"{name}-staging", project=project, dataset_id=cfg.staging_dataset, location=cfg.staging_location,
            description="batchline staging: one table per batch run; the coordinator drops it after verifying "
                        "its rows in the main table. The default expiration is a last safety net.",
            default_table_expiration_ms=cfg.staging_table_expiration_hours * 3600 * 1000,
            delete_contents_on_destroy=not cfg.deletion_protection,
            labels={**self._labels, DATASET_LABEL: "staging"}, opts=child)

    def _create_tables(self) -> None:
        name, project, cfg, child = self._name, self._args.project, self._args.cfg, pulumi.ResourceOptions(parent=self)
        self.main_table = gcp.bigquery.Table(
            f"{name}-main-table", project=project, dataset_id=self.main_dataset.dataset_id,
            table_id=cfg.main_table, schema=schema_json(schema.MAIN_TABLE_COLUMNS),
            time_partitioning={"type": "DAY", "field": schema.MAIN_TABLE_PARTITION_FIELD},
            clusterings=list(schema.MAIN_TABLE_CLUSTER_FIELDS),
            deletion_protection=cfg.deletion_protection, labels=self._labels, opts=child)
        self.context_table = gcp.bigquery.Table(
            f"{name}-context-table", project=project, dataset_id=self.main_dataset.dataset_id,
            table_id=cfg.context_table, schema=schema_json(schema.CONTEXT_TABLE_COLUMNS),
            time_partitioning={"type": "DAY", "field": schema.CONTEXT_TABLE_PARTITION_FIELD},
            deletion_protection=cfg.deletion_protection, labels=self._labels, opts=child)
        # The pinned manifests of MERGE attempts (batchline/adapters/manifests.py): kept MANIFEST_RETENTION_DAYS,
        # each day's partition, so a batch's audit knows what its MERGE merged long after its staging table
        self.manifest_table = gcp.bigquery.Table(
            f"{name}-manifest-table", project=project, dataset_id=self.main_dataset.dataset_id,
            table_id=schema.MANIFEST_TABLE, schema=schema_json(schema.MANIFEST_TABLE_COLUMNS),
            time_partitioning={"type": "DAY", "field": schema.MANIFEST_TABLE_PARTITION_FIELD,
                               "expiration_ms": schema.MANIFEST_RETENTION_DAYS * 24 * 3600 * 1000},
            clusterings=list(schema.MANIFEST_TABLE_CLUSTER_FIELDS),
            deletion_protection=cfg.deletion_protection, labels=self._labels, opts=child)

    def _grant_datasets(self) -> list[gcp.bigquery.DatasetIamMember]:
        """Each grantee's dataset roles, replaced with their dataset (a dataset recreated under the same
        name starts without bindings)."""
        datasets = {"main": self.main_dataset, "staging": self.staging_dataset}
        return [
            gcp.bigquery.DatasetIamMember(
                f"{self._name}-{kind}-{g.slug}-{role.split('.')[-1]}", project=self._args.project,
                dataset_id=datasets[kind].dataset_id, role=role, member=g.member,
                opts=pulumi.ResourceOptions(parent=self, replace_with=[datasets[kind]]))
            for g in grantees(self._args.members, self._args.operators)
            for kind, role in g.access.dataset_roles
        ]
