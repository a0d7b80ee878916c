"""Service accounts: one per function, one for Pub/Sub push, one for Cloud Scheduler.

What each identity may do is declared once, here, as data (`ACCESS`); the components that own a
resource (dataset, topic, function) grant exactly these roles on it, and the policy set checks that
nothing else was granted. Project-level grants are limited to the roles that have no narrower scope
(BigQuery jobs, Firestore).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from batchline.topology import COORDINATOR, RECONCILE, WORKER

PUSH = "push"
SCHEDULER = "scheduler"
INVOKER_ROLE = "roles/run.invoker"  # gen2 functions are Cloud Run services


@dataclass(frozen=True)
class Access:
    project_roles: tuple[str, ...] = ()
    dataset_roles: tuple[tuple[str, str], ...] = ()  # (dataset kind "main"|"staging", role)
    publishes_to: tuple[str, ...] = ()  # topic keys
    invokes: tuple[str, ...] = ()  # function names


ACCESS: dict[str, Access] = {
    # writes its own staging table (created from the main table's live schema: F5), publishes completion;
    # reads batch/item state and counts its attempts on the item document (Firestore)
    WORKER: Access(
        project_roles=("roles/bigquery.jobUser", "roles/datastore.user"),
        dataset_roles=(("staging", "roles/bigquery.dataEditor"), ("main", "roles/bigquery.dataViewer")),
        publishes_to=("completions",),
    ),
    # batch state in Firestore, one MERGE into main, deletes verified staging tables, dispatches work
    COORDINATOR: Access(
        project_roles=("roles/bigquery.jobUser", "roles/datastore.user"),
        dataset_roles=(("staging", "roles/bigquery.dataEditor"), ("main", "roles/bigquery.dataEditor")),
        publishes_to=("work", "consolidation", "summary"),
    ),
    # compares schedule (context table) with predictions, re-dispatches small gaps as a new batch;
    # merges orphaned staging tables into main (one MERGE per batch) and deletes them once verified
    RECONCILE: Access(
        project_roles=("roles/bigquery.jobUser", "roles/datastore.user"),
        dataset_roles=(("main", "roles/bigquery.dataEditor"), ("staging", "roles/bigquery.dataEditor")),
        publishes_to=("work",),
    ),
    PUSH: Access(invokes=(WORKER, COORDINATOR)),
    SCHEDULER: Access(invokes=(COORDINATOR, RECONCILE)),
}


class ServiceAccounts(pulumi.ComponentResource):
    def __init__(self, name: str, project: str, prefix: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:ServiceAccounts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.accounts: dict[str, gcp.serviceaccount.Account] = {}
        for who in ACCESS:
            # account ids: 6-30 chars, so the stack prefix is shortened
            account_id = f"{prefix[:18]}-{who}"[:30].strip("-")
            self.accounts[who] = gcp.serviceaccount.Account(
                f"{name}-{who}", project=project, account_id=account_id,
                display_name=f"batchline {who} ({prefix})", opts=child)
        self.emails: dict[str, pulumi.Output[str]] = {w: a.email for w, a in self.accounts.items()}
        self.members: dict[str, pulumi.Output[str]] = {
            w: a.email.apply(lambda e: f"serviceAccount:{e}") for w, a in self.accounts.items()}
        self.project_grants = [
            gcp.projects.IAMMember(f"{name}-{who}-{role.split('/')[-1]}", project=project, role=role,
                                   member=self.members[who], opts=child)
            for who, access in ACCESS.items() for role in access.project_roles
        ]
        self.register_outputs({"emails": self.emails})
