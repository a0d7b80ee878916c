"""Firestore database (native mode) for batch state, where the project has none.

A project has at most one `(default)` database; if it already exists (created by hand or by another
stack), set `batchline:firestore.create false` (or `pulumi import` it) instead of failing.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.config import FirestoreConfig


class Firestore(pulumi.ComponentResource):
    def __init__(self, name: str, project: str, cfg: FirestoreConfig,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:Firestore", name, None, opts)
        self.database: gcp.firestore.Database | None = None
        if cfg.create:
            self.database = gcp.firestore.Database(
                f"{name}-db", project=project, name=cfg.database, location_id=cfg.location,
                type="FIRESTORE_NATIVE", concurrency_mode="OPTIMISTIC",
                delete_protection_state="DELETE_PROTECTION_ENABLED",
                deletion_policy="ABANDON",  # batch state outlives the stack
                opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"database": cfg.database, "created": cfg.create})
