"""Who may run `pulumi up`: the non-Owner role list, and for every resource type the program creates
the permission that creating it (or setting its IAM policy) takes and the role of the list that
grants it. docs/deploy.md lists the same roles; tests check that the list, this table, the resources
the program registers and the docs agree, so a new resource type (a new kind of grant above all)
cannot ship without naming the role that lets the deployer create it.

Roles and permissions: https://cloud.google.com/iam/docs/understanding-roles (predefined roles
reference). Per-resource IAM (`*IamMember`) needs the resource's `setIamPolicy` permission, which the
usual "Editor + Project IAM Admin" set does not give on topics, subscriptions, datasets, Cloud Run
services or service accounts: that was the gap.
"""

from __future__ import annotations

from infra.resource_types import (
    T_ACCOUNT,
    T_ALERT,
    T_BUCKET,
    T_CHANNEL,
    T_DATABASE,
    T_DATASET,
    T_DATASET_IAM,
    T_FIELD,
    T_FUNCTION,
    T_IDENTITY,
    T_JOB,
    T_METRIC,
    T_OBJECT,
    T_PROJECT_IAM,
    T_PROVIDER,
    T_RUN_IAM,
    T_SA_IAM,
    T_SERVICE,
    T_SLEEP,
    T_SUB,
    T_SUB_IAM,
    T_TABLE,
    T_TOPIC,
    T_TOPIC_IAM,
)

DEPLOYER_ROLES: tuple[str, ...] = (
    "roles/serviceusage.serviceUsageAdmin",  # enable APIs, create service identities
    "roles/iam.serviceAccountAdmin",  # create service accounts, set IAM on one (token creator)
    "roles/iam.serviceAccountUser",  # deploy functions/jobs that run as our service accounts
    "roles/resourcemanager.projectIamAdmin",  # project-level grants (BigQuery jobs, Firestore, build)
    "roles/bigquery.dataOwner",  # datasets, tables, dataset IAM
    "roles/datastore.owner",  # the Firestore database
    "roles/storage.admin",  # the source bucket and archives
    "roles/cloudfunctions.developer",  # gen2 functions
    "roles/run.admin",  # invoker grants on the functions' Cloud Run services
    "roles/pubsub.admin",  # topics, subscriptions, their IAM
    "roles/cloudscheduler.admin",  # scheduler jobs
    "roles/logging.configWriter",  # log-based metrics
    "roles/monitoring.editor",  # alert policies, notification channels
)

# resource type -> (permission the deployer needs, the role of DEPLOYER_ROLES that grants it)
NEEDS: dict[str, tuple[str, str]] = {
    T_SERVICE: ("serviceusage.services.enable", "roles/serviceusage.serviceUsageAdmin"),
    T_IDENTITY: ("serviceusage.services.enable",
                                                     "roles/serviceusage.serviceUsageAdmin"),
    T_ACCOUNT: ("iam.serviceAccounts.create", "roles/iam.serviceAccountAdmin"),
    T_SA_IAM: ("iam.serviceAccounts.setIamPolicy", "roles/iam.serviceAccountAdmin"),
    T_PROJECT_IAM: ("resourcemanager.projects.setIamPolicy",
                                         "roles/resourcemanager.projectIamAdmin"),
    T_DATASET: ("bigquery.datasets.create", "roles/bigquery.dataOwner"),
    T_TABLE: ("bigquery.tables.create", "roles/bigquery.dataOwner"),
    T_DATASET_IAM: ("bigquery.datasets.setIamPolicy", "roles/bigquery.dataOwner"),
    T_DATABASE: ("datastore.databases.create", "roles/datastore.owner"),
    # an index exemption (Firestore's IAM page: the datastore.indexes.* permissions, now also named
    # datastore.schemas.*, belong to roles/datastore.indexAdmin, which roles/datastore.owner includes)
    T_FIELD: ("datastore.indexes.update", "roles/datastore.owner"),
    T_BUCKET: ("storage.buckets.create", "roles/storage.admin"),
    T_OBJECT: ("storage.objects.create", "roles/storage.admin"),
    T_FUNCTION: ("cloudfunctions.functions.create", "roles/cloudfunctions.developer"),
    T_RUN_IAM: ("run.services.setIamPolicy", "roles/run.admin"),
    T_TOPIC: ("pubsub.topics.create", "roles/pubsub.admin"),
    T_SUB: ("pubsub.subscriptions.create", "roles/pubsub.admin"),
    T_TOPIC_IAM: ("pubsub.topics.setIamPolicy", "roles/pubsub.admin"),
    T_SUB_IAM: ("pubsub.subscriptions.setIamPolicy",
                                                               "roles/pubsub.admin"),
    T_JOB: ("cloudscheduler.jobs.create", "roles/cloudscheduler.admin"),
    T_METRIC: ("logging.logMetrics.create", "roles/logging.configWriter"),
    T_ALERT: ("monitoring.alertPolicies.create", "roles/monitoring.editor"),
    T_CHANNEL: ("monitoring.notificationChannels.create",
                                                               "roles/monitoring.editor"),
    # acting as the functions' runtime and build accounts and the scheduler's OIDC account
    "actAs": ("iam.serviceAccounts.actAs", "roles/iam.serviceAccountUser"),
}
# created without any Google permission
LOCAL_TYPES: tuple[str, ...] = (T_PROVIDER, T_SLEEP)
