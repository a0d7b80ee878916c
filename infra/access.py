"""Who may do what, declared once as data (no Pulumi here, so the CrossGuard pack and the offline rules
import it too). The components that own a resource (dataset, topic, function) grant exactly these
roles on it, and the rules check that nothing else was granted. Project-level grants are limited to
the roles that have no narrower scope (BigQuery jobs, Firestore, and the build account's roles).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from infra.shared import topology

PUSH = "push"
SCHEDULER = "scheduler"
BUILD = "build"
OPERATORS = "operators"  # the IAM members `batchline:operators` lists (people, groups), not our accounts
# The roles the program grants or the rules look for, named once.
INVOKER_ROLE = "roles/run.invoker"  # gen2 functions are Cloud Run services
INVOKER_ROLES = (INVOKER_ROLE, "roles/cloudfunctions.invoker")  # either lets a member call a function
PUBLISHER_ROLE = "roles/pubsub.publisher"
SUBSCRIBER_ROLE = "roles/pubsub.subscriber"
TOKEN_CREATOR_ROLE = "roles/iam.serviceAccountTokenCreator"  # the Pub/Sub agent mints push OIDC tokens
PRIMITIVE_ROLES = ("roles/owner", "roles/editor", "roles/viewer")  # never granted: far beyond any need
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")  # never granted anything
# The Pub/Sub service agent as the API names it (projects.ServiceIdentity)
PUBSUB_AGENT_MEMBER = re.compile(r"serviceAccount:service-[0-9]+@gcp-sa-pubsub\.iam\.gserviceaccount\.com")
# The roles Google's "Custom Service Account for Cloud Build" page lists for the account a function's
# build runs as (https://cloud.google.com/functions/docs/securing/build-custom-sa): build logs, the
# built image in Artifact Registry, the source archive in Cloud Storage. Since July 2024 a new
# project's default build account may lack them, and the first `pulumi up` fails to build.
BUILD_ROLES: tuple[str, ...] = ("roles/logging.logWriter", "roles/artifactregistry.writer",
                                "roles/storage.objectViewer")


@dataclass(frozen=True)
class Access:
    project_roles: tuple[str, ...] = ()
    dataset_roles: tuple[tuple[str, str], ...] = ()  # (dataset kind "main"|"staging", role)
    publishes_to: tuple[str, ...] = ()  # topic keys
    invokes: tuple[str, ...] = ()  # function names
    reads_dead_letters: tuple[str, ...] = ()  # topic keys: subscriber on its `-dlq-pull` subscription


# every topic whose dead letters are kept in a `<prefix>-<key>-dlq-pull` subscription
DEAD_LETTER_KEYS: tuple[str, ...] = ("work", "completions", "consolidation", "control")


ACCESS: dict[str, Access] = {
    # appends its rows to its batch's staging table through the Storage Write API (tables.get for the
    # schema, tables.updateData for AppendRows: dataEditor on the staging dataset; no jobs, no main
    # table), publishes completions; reads batch/item state and may count attempts (Firestore)
    topology.WORKER: Access(
        project_roles=("roles/datastore.user",),
        dataset_roles=(("staging", "roles/bigquery.dataEditor"),),
        publishes_to=("completions",),
    ),
    # batch state in Firestore, creates each batch's staging table from the main table's schema, checks
    # completions against it, one MERGE into main, drops the verified staging table, dispatches work;
    # `dlq replay` (batchline.flows.replay, run by the coordinator on a control request) pulls and acks the
    # dead-letter pull subscriptions and republishes to the source topic (completions and control too)
    topology.COORDINATOR: Access(
        project_roles=("roles/bigquery.jobUser", "roles/datastore.user"),
        dataset_roles=(("staging", "roles/bigquery.dataEditor"), ("main", "roles/bigquery.dataEditor")),
        publishes_to=("work", "consolidation", "summary", "completions", "control"),
        reads_dead_letters=DEAD_LETTER_KEYS,
    ),
    # compares schedule (context table) with predictions (reads rows of main), finishes orphaned staged
    # rows (one verified MERGE into main per batch, then drops the table: dataEditor on both datasets),
    # re-dispatches small gaps as a new batch through the coordinator's start logic, which publishes
    # work and, for a batch with nothing pending, a consolidation request
    topology.RECONCILE: Access(
        project_roles=("roles/bigquery.jobUser", "roles/datastore.user"),
        dataset_roles=(("main", "roles/bigquery.dataEditor"), ("staging", "roles/bigquery.dataEditor")),
        publishes_to=("work", "consolidation"),
    ),
    PUSH: Access(invokes=(topology.WORKER, topology.COORDINATOR)),
    SCHEDULER: Access(invokes=(topology.COORDINATOR, topology.RECONCILE)),
    BUILD: Access(project_roles=BUILD_ROLES),
}

# What each member of `batchline:operators` gets (issue 8: operator actions reach the coordinator only
# through the control topic; no operator invokes a function). The operator CLI publishes control
# requests, reads their answers and batches in Firestore (read-only), runs `batchline audit` queries
# (jobs in the project, rows of the main dataset) and `dlq list` pulls dead letters and releases them
# (never acks: subscriber, which also allows acking, is the narrowest role that pulls). `batchline
# ledger` also counts the MERGE jobs the coordinator ran (jobs.list of all users: bigquery.jobs.listAll,
# in roles/bigquery.resourceViewer; jobUser shows only one's own jobs) and asks whether the batch's
# staging table is left (tables.get: metadataViewer on the staging dataset, no row access). The
# operator's ADC names the stack's project as its quota project, which takes serviceusage.services.use
# (roles/serviceusage.serviceUsageConsumer; docs/deploy.md, "Operators").
OPERATOR_ACCESS = Access(
    project_roles=("roles/bigquery.jobUser", "roles/datastore.viewer", "roles/bigquery.resourceViewer",
                   "roles/serviceusage.serviceUsageConsumer"),
    dataset_roles=(("main", "roles/bigquery.dataViewer"), ("staging", "roles/bigquery.metadataViewer")),
    publishes_to=("control",),
    reads_dead_letters=DEAD_LETTER_KEYS,
)
