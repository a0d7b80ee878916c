"""Type tokens of every resource the program registers, as the engine (and a policy pack) names them,
and which input of each per-resource grant names the resource it is on. Pure data, declared once: the
rules, the mocks (infra/harness.py), the deployer's role table (infra/deployer.py) and the tests read
them here."""

from __future__ import annotations

T_PROVIDER = "pulumi:providers:gcp"
T_SERVICE = "gcp:projects/service:Service"
T_IDENTITY = "gcp:projects/serviceIdentity:ServiceIdentity"
T_PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
T_ACCOUNT = "gcp:serviceaccount/account:Account"
T_SA_IAM = "gcp:serviceaccount/iAMMember:IAMMember"
T_DATASET = "gcp:bigquery/dataset:Dataset"
T_TABLE = "gcp:bigquery/table:Table"
T_DATASET_IAM = "gcp:bigquery/datasetIamMember:DatasetIamMember"
T_DATABASE = "gcp:firestore/database:Database"
T_FIELD = "gcp:firestore/field:Field"
T_BUCKET = "gcp:storage/bucket:Bucket"
T_OBJECT = "gcp:storage/bucketObject:BucketObject"
T_FUNCTION = "gcp:cloudfunctionsv2/function:Function"
T_RUN_IAM = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
T_TOPIC = "gcp:pubsub/topic:Topic"
T_TOPIC_IAM = "gcp:pubsub/topicIAMMember:TopicIAMMember"
T_SUB = "gcp:pubsub/subscription:Subscription"
T_SUB_IAM = "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember"
T_JOB = "gcp:cloudscheduler/job:Job"
T_METRIC = "gcp:logging/metric:Metric"
T_ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"
T_CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
T_SLEEP = "time:index/sleep:Sleep"
# a data source the program calls (the mocks answer it)
GET_PROJECT = "gcp:organizations/getProject:getProject"

# per-resource IAM member type -> the input naming the resource the grant is on
RESOURCE_GRANTS: dict[str, str] = {T_TOPIC_IAM: "topic", T_SUB_IAM: "subscription", T_DATASET_IAM: "datasetId",
                                   T_RUN_IAM: "name", T_SA_IAM: "serviceAccountId"}
GRANTS = (T_PROJECT_IAM, *RESOURCE_GRANTS)
