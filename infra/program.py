"""The whole stack: validated config in, each component built from its Args, operator outputs
exported."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from infra.access import BUILD, PUSH, SCHEDULER
from infra.components.apis import Apis, ApisArgs
from infra.components.bigquery import BigQuery, BigQueryArgs
from infra.components.firestore import Firestore, FirestoreArgs
from infra.components.functions import Functions, FunctionsArgs
from infra.components.iam import ServiceAccounts, ServiceAccountsArgs
from infra.components.monitoring import Monitoring, MonitoringArgs
from infra.components.pubsub import PubSub, PubSubArgs
from infra.components.scheduler import Scheduler, SchedulerArgs
from infra.config import NAMESPACE, StackConfig, from_pulumi
from infra.function_spec import REPO_ROOT
from infra.shared import topology


def build(cfg: StackConfig, slack_token: pulumi.Input[str] | None = None,
          root: Path = REPO_ROOT) -> dict[str, object]:
    project, region, prefix = cfg.gcp.project, cfg.gcp.region, cfg.pubsub.topic_prefix
    topo = topology.build_topology(prefix)
    provider = gcp.Provider("gcp", project=project, region=region)
    apis = Apis("apis", ApisArgs(project, cfg.apis), opts=pulumi.ResourceOptions(provider=provider))
    after_apis = pulumi.ResourceOptions(provider=provider, depends_on=[apis])

    accounts = ServiceAccounts("sa", ServiceAccountsArgs(project, prefix, cfg.operators), opts=after_apis)
    function_members = {fn: accounts.members[fn] for fn in topology.FUNCTIONS}
    bigquery = BigQuery("bq", BigQueryArgs(project, cfg.bigquery, prefix, function_members, cfg.operators),
                        opts=after_apis)
    firestore = Firestore("firestore", FirestoreArgs(project, cfg.firestore), opts=after_apis)
    functions = Functions("fn", FunctionsArgs(
        cfg, accounts.emails, {who: accounts.members[who] for who in (PUSH, SCHEDULER)},
        build_account=accounts.accounts[BUILD].name, build_grants=accounts.grants_of[BUILD], root=root),
        opts=after_apis)
    # The Pub/Sub service agent, created if the project has none yet and named as the API reports it
    # (not a string assembled from the project number).
    pubsub_agent = gcp.projects.ServiceIdentity("pubsub-agent", project=project, service="pubsub.googleapis.com",
                                                opts=after_apis)
    pubsub = PubSub("pubsub", PubSubArgs(
        project, topo, cfg.pubsub, cfg.capacity, functions.uris, accounts.accounts[PUSH], function_members,
        pubsub_agent, cfg.operators), opts=after_apis)
    scheduler = Scheduler("scheduler", SchedulerArgs(
        project, region, prefix, cfg.schedules, functions.uris, accounts.emails[SCHEDULER]), opts=after_apis)
    Monitoring("monitoring", MonitoringArgs(
        cfg, function_names=[f"{prefix}-{fn}" for fn in topology.FUNCTIONS],
        dlq_subscriptions=[t.dead_letter_pull_subscription for t in topo.topics
                           if any(s.dead_letter for s in t.subscriptions)],
        source_subscriptions=[s.name for t in topo.topics for s in t.subscriptions if s.dead_letter],
        slack_token=slack_token), opts=after_apis)
    return stack_outputs(cfg, pubsub, functions, scheduler, bigquery, firestore)


def stack_outputs(cfg: StackConfig, pubsub: PubSub, functions: Functions, scheduler: Scheduler,
                  bigquery: BigQuery, firestore: Firestore) -> dict[str, object]:
    """What operators and the CLI read (`pulumi stack output`)."""
    return {
        "project": cfg.gcp.project,
        "region": cfg.gcp.region,
        "topics": {k: t.name for k, t in pubsub.topics.items()},
        "dead_letter_topics": {k: t.name for k, t in pubsub.dead_letter_topics.items()},
        "dead_letter_pull_subscriptions": {k: s.name for k, s in pubsub.dead_letter_pull.items()},
        "function_urls": functions.uris,
        "function_names": {fn: f.name for fn, f in functions.functions.items()},
        "scheduler_jobs": {k: j.name for k, j in scheduler.jobs.items()},
        "main_dataset": bigquery.main_dataset.dataset_id,
        "staging_dataset": bigquery.staging_dataset.dataset_id,
        "main_table": bigquery.main_table.table_id,
        "context_table": bigquery.context_table.table_id,
        # what the operator CLI needs to reach this stack (batchline/ops/target.py): jobs run in the
        # datasets' location, batch state lives in this database
        "bq_location": cfg.bigquery.location,
        "firestore_database": firestore.database.name if firestore.database is not None else cfg.firestore.database,
        "emergency": cfg.functions.emergency,
        "caps": {fn: {"max_instances": c.max_instances, "concurrency": c.concurrency}
                 for fn, c in cfg.functions.caps.items()},
    }


def run() -> tuple[StackConfig, dict[str, object]]:
    """Read and validate the stack's config through pulumi.Config, then build the stack."""
    cfg = from_pulumi()
    token = pulumi.Config(NAMESPACE).get_secret("slack_token")
    return cfg, build(cfg, slack_token=token)


def main() -> None:
    _, outputs = run()
    for key, value in outputs.items():
        pulumi.export(key, value)
