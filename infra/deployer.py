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
    "gcp:projects/service:Service": ("serviceusage.services.enable", "roles/serviceusage.serviceUsageAdmin"),
    "gcp:projects/serviceIdentity:ServiceIdentity": ("serviceusage.services.enable",
                                                     "roles/serviceusage.serviceUsageAdmin"),
    "gcp:serviceaccount/account:Account": ("iam.serviceAccounts.create", "roles/iam.serviceAccountAdmin"),
    "gcp:serviceaccount/iAMMember:IAMMember": ("iam.serviceAccounts.setIamPolicy", "roles/iam.serviceAccountAdmin"),
    "gcp:projects/iAMMember:IAMMember": ("resourcemanager.projects.setIamPolicy",
                                         "roles/resourcemanager.projectIamAdmin"),
    "gcp:bigquery/dataset:Dataset": ("bigquery.datasets.create", "roles/bigquery.dataOwner"),
    "gcp:bigquery/table:Table": ("bigquery.tables.create", "roles/bigquery.dataOwner"),
    "gcp:bigquery/datasetIamMember:DatasetIamMember": ("bigquery.datasets.setIamPolicy", "roles/bigquery.dataOwner"),
    "gcp:firestore/database:Database": ("datastore.databases.create", "roles/datastore.owner"),
    # an index exemption (Firestore's IAM page: the datastore.indexes.* permissions, now also named
    # datastore.schemas.*, belong to roles/datastore.indexAdmin, which roles/datastore.owner includes)
    "gcp:firestore/field:Field": ("datastore.indexes.update", "roles/datastore.owner"),
    "gcp:storage/bucket:Bucket": ("storage.buckets.create", "roles/storage.admin"),
    "gcp:storage/bucketObject:BucketObject": ("storage.objects.create", "roles/storage.admin"),
    "gcp:cloudfunctionsv2/function:Function": ("cloudfunctions.functions.create", "roles/cloudfunctions.developer"),
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": ("run.services.setIamPolicy", "roles/run.admin"),
    "gcp:pubsub/topic:Topic": ("pubsub.topics.create", "roles/pubsub.admin"),
    "gcp:pubsub/subscription:Subscription": ("pubsub.subscriptions.create", "roles/pubsub.admin"),
    "gcp:pubsub/topicIAMMember:TopicIAMMember": ("pubsub.topics.setIamPolicy", "roles/pubsub.admin"),
    "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember": ("pubsub.subscriptions.setIamPolicy",
                                                               "roles/pubsub.admin"),
    "gcp:cloudscheduler/job:Job": ("cloudscheduler.jobs.create", "roles/cloudscheduler.admin"),
    "gcp:logging/metric:Metric": ("logging.logMetrics.create", "roles/logging.configWriter"),
    "gcp:monitoring/alertPolicy:AlertPolicy": ("monitoring.alertPolicies.create", "roles/monitoring.editor"),
    "gcp:monitoring/notificationChannel:NotificationChannel": ("monitoring.notificationChannels.create",
                                                               "roles/monitoring.editor"),
    # acting as the functions' runtime and build accounts and the scheduler's OIDC account
    "actAs": ("iam.serviceAccounts.actAs", "roles/iam.serviceAccountUser"),
}
# created without any Google permission
LOCAL_TYPES: tuple[str, ...] = ("pulumi:providers:gcp", "time:index/sleep:Sleep")
