"""Firestore database (native mode) for batch state, where the project has none, and the index
exemptions of every field that grows with a batch's item count (batchline/layout.py).

A project has at most one `(default)` database; if it already exists (created by hand or by another
stack), set `batchline:firestore.create false` (or `pulumi import` it) instead of failing. The
exemptions are made either way, on the database `firestore.database` names.

An exemption is a `firestore.Field` with an empty `index_config`: "configuring the index configuration
with an empty block disables all indexes on the field" (pulumi-gcp's Field docs); on a map field it
covers every subfield (https://cloud.google.com/firestore/docs/solutions/index-map-field). Without them
a batch of ~13,000 items cannot record its MERGE result: 40,000 index entries per document at most
(https://cloud.google.com/firestore/quotas).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from batchline.layout import exemptions
from infra.config_types import FirestoreConfig


@dataclass
class FirestoreArgs:
    project: str
    cfg: FirestoreConfig


class Firestore(pulumi.ComponentResource):
    def __init__(self, name: str, args: FirestoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:Firestore", name, None, opts)
        project, cfg = args.project, args.cfg
        self.database: gcp.firestore.Database | None = None
        if cfg.create:
            self.database = gcp.firestore.Database(
                f"{name}-db", project=project, name=cfg.database, location_id=cfg.location,
                type="FIRESTORE_NATIVE", concurrency_mode="OPTIMISTIC",
                delete_protection_state="DELETE_PROTECTION_ENABLED",
                deletion_policy="ABANDON",  # batch state outlives the stack
                opts=pulumi.ResourceOptions(parent=self))
        after_db = pulumi.ResourceOptions(parent=self, depends_on=[self.database] if self.database else [])
        self.exemptions = [
            gcp.firestore.Field(
                f"{name}-noindex-{group}-{field.replace('_', '-')}", project=project,
                database=self.database.name if self.database else cfg.database,
                collection=group, field=field, index_config={}, opts=after_db)
            for group, field in exemptions()
        ]
        self.register_outputs({"database": cfg.database, "created": cfg.create,
                               "unindexed_fields": [f"{g}.{f}" for g, f in exemptions()]})
