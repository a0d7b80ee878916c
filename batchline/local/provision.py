"""Creates the pipeline's resources on the emulators from the same definitions infra deploys:
topics and subscriptions from `batchline.topology` (pushing to a stack's functions), tables from
`batchline.domain.schema`; and the synthetic context rows a local run needs.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import random
from dataclasses import replace

from google.api_core import exceptions as gexc
from google.cloud import bigquery, pubsub_v1
from google.protobuf import duration_pb2

from batchline.domain.schema import (
    CONTEXT_TABLE_COLUMNS,
    CONTEXT_TABLE_PARTITION_FIELD,
    MAIN_TABLE_CLUSTER_FIELDS,
    MAIN_TABLE_COLUMNS,
    MAIN_TABLE_PARTITION_FIELD,
    MANIFEST_TABLE_CLUSTER_FIELDS,
    MANIFEST_TABLE_COLUMNS,
    MANIFEST_TABLE_PARTITION_FIELD,
    Column,
)
from batchline.local.stack_record import StackInfo
from batchline.settings import Settings
from batchline.topology import FUNCTIONS, SubscriptionSpec, Topology, build_topology

# The Pub/Sub emulator (0.8.x) applies a subscription's retry policy, and under load some nacked
# messages then never come back (seen: 23 of 450 items stuck for minutes, never dead-lettered).
# Without a retry policy it redelivers a nacked push after ~1 s and dead-letters reliably, so the
# local stack leaves the policy out; infra deploys it (real Pub/Sub honours it).
LOCAL_BACKOFF = {"retry_policy": 0}


def _schema(columns: tuple[Column, ...]) -> list[bigquery.SchemaField]:
    return [bigquery.SchemaField(c.name, c.type, mode=c.mode, description=c.description) for c in columns]


def main_table_schema() -> list[bigquery.SchemaField]:
    return _schema(MAIN_TABLE_COLUMNS)


def create_tables(bq: bigquery.Client, s: Settings) -> None:
    """Datasets, the main table (partitioned by date, clustered), the context table and the manifest
    table (batchline/adapters/manifests.py), as infra declares them."""
    for ds in (s.main_dataset, s.staging_dataset):
        dataset = bigquery.Dataset(f"{s.project}.{ds}")
        dataset.location = s.bq_location
        bq.create_dataset(dataset, exists_ok=True)
    main = bigquery.Table(s.main_table_id, schema=main_table_schema())
    main.time_partitioning = bigquery.TimePartitioning(field=MAIN_TABLE_PARTITION_FIELD)
    main.clustering_fields = list(MAIN_TABLE_CLUSTER_FIELDS)
    bq.create_table(main, exists_ok=True)
    ctx = bigquery.Table(s.context_table_id, schema=_schema(CONTEXT_TABLE_COLUMNS))
    ctx.time_partitioning = bigquery.TimePartitioning(field=CONTEXT_TABLE_PARTITION_FIELD)
    bq.create_table(ctx, exists_ok=True)
    manifests = bigquery.Table(s.manifest_table_id, schema=_schema(MANIFEST_TABLE_COLUMNS))
    manifests.time_partitioning = bigquery.TimePartitioning(field=MANIFEST_TABLE_PARTITION_FIELD)
    manifests.clustering_fields = list(MANIFEST_TABLE_CLUSTER_FIELDS)
    bq.create_table(manifests, exists_ok=True)


def synthetic_context(game_date: dt.date, players: int, seed: int = 0) -> list[dict]:
    """`players` players spread over games of ~14 players each, like a real slate."""
    rng = random.Random(f"{seed}|{game_date}")
    games = max(1, round(players / 14))
    rows = []
    for n in range(players):
        rows.append({
            "game_date": game_date.isoformat(),
            "player_lookup": f"player_{n:04d}",
            "game_id": f"{game_date:%Y%m%d}_g{rng.randrange(games):02d}",
        })
    return rows


def seed_context(bq: bigquery.Client, s: Settings, game_date: dt.date, rows: list[dict],
                 loaded_at: dt.datetime | None = None) -> None:
    """Replace the context rows of one date (the context table is not the main table: DML here is
    the seeding tool's, not the pipeline's), stamped `loaded_at` (now by default) as an upstream load
    would stamp them: a start refuses a date whose newest load is too old (batchline/adapters/freshness.py)."""
    stamp = (loaded_at or dt.datetime.now(dt.UTC)).isoformat()
    rows = [{"loaded_at": stamp, **r} for r in rows]
    bq.query(
        f"DELETE FROM `{s.context_table_id}` WHERE game_date = @d",
        job_config=bigquery.QueryJobConfig(query_parameters=[bigquery.ScalarQueryParameter("d", "DATE", game_date)]),
    ).result()
    if not rows:
        return
    payload = "".join(json.dumps(r) + "\n" for r in rows).encode()
    job = bq.load_table_from_file(
        io.BytesIO(payload), s.context_table_id,
        job_config=bigquery.LoadJobConfig(
            schema=_schema(CONTEXT_TABLE_COLUMNS),
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        ),
    )
    job.result()


def _duration(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)


def _subscription_request(project: str, topic: str, spec: SubscriptionSpec, dlq_topic: str | None,
                          endpoints: dict[str, str], overrides: dict[str, int]) -> dict:
    overrides = dict(overrides)
    with_retry_policy = bool(overrides.pop("retry_policy", True))
    spec = replace(spec, policy=replace(spec.policy, **overrides))
    sub = pubsub_v1.SubscriberClient.subscription_path(project, spec.name)
    req: dict = {
        "name": sub,
        "topic": pubsub_v1.PublisherClient.topic_path(project, topic),
        "ack_deadline_seconds": spec.policy.ack_deadline_s,
        "message_retention_duration": _duration(spec.policy.retention_s),
    }
    if with_retry_policy:
        req["retry_policy"] = {"minimum_backoff": _duration(spec.policy.min_backoff_s),
                               "maximum_backoff": _duration(spec.policy.max_backoff_s)}
    if spec.push:
        req["push_config"] = {"push_endpoint": endpoints[spec.push.function].rstrip("/") + spec.push.path}
    if dlq_topic:
        req["dead_letter_policy"] = {
            "dead_letter_topic": pubsub_v1.PublisherClient.topic_path(project, dlq_topic),
            "max_delivery_attempts": spec.policy.max_delivery_attempts,
        }
    return req


def create_topology(project: str, topology: Topology, endpoints: dict[str, str],
                    overrides: dict[str, int] | None = None) -> list[str]:
    """Create every topic and subscription of `topology` (recreating subscriptions, so push endpoints
    follow the functions' current ports). `endpoints` maps function name -> base URL; `overrides`
    replaces DeliveryPolicy fields; `retry_policy=0` leaves the retry policy out (LOCAL_BACKOFF)."""
    overrides = overrides or {}
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    created: list[str] = []

    def topic(name: str) -> None:
        try:
            publisher.create_topic(name=publisher.topic_path(project, name))
        except gexc.AlreadyExists:
            pass

    def subscription(req: dict) -> None:
        try:
            subscriber.delete_subscription(subscription=req["name"])
        except gexc.NotFound:
            pass
        subscriber.create_subscription(request=req)
        created.append(req["name"])

    try:
        for t in topology.topics:
            topic(t.name)
            has_dlq = any(s.dead_letter for s in t.subscriptions)
            if has_dlq:
                topic(t.dead_letter_topic)
                for s in topology.dead_letter_subscriptions(t):
                    subscription(_subscription_request(project, t.dead_letter_topic, s, None, endpoints, overrides))
            for s in t.subscriptions:
                dlq = t.dead_letter_topic if s.dead_letter else None
                subscription(_subscription_request(project, t.name, s, dlq, endpoints, overrides))
    finally:
        subscriber.close()
    return created


def topology_of(info: StackInfo) -> Topology:
    return build_topology(info.settings_obj().topic_prefix)


def provision_topology(info: StackInfo) -> None:
    """Create (or recreate) every topic and subscription, pushing to the functions' current URLs."""
    create_topology(info.settings_obj().project, topology_of(info), {k: info.url(k) for k in FUNCTIONS},
                    {"max_delivery_attempts": info.max_delivery_attempts, **LOCAL_BACKOFF})


def move_push_endpoints(info: StackInfo, functions: list[str]) -> None:
    """Point the push subscriptions of `functions` at their current URLs, keeping the subscriptions
    (and the messages waiting in them)."""
    topology = topology_of(info)
    project = info.settings_obj().project
    sub = pubsub_v1.SubscriberClient()
    try:
        for t in topology.topics:
            readers = topology.dead_letter_subscriptions(t) if any(x.dead_letter for x in t.subscriptions) else ()
            for spec in (*t.subscriptions, *readers):
                if spec.push and spec.push.function in functions:
                    endpoint = info.url(spec.push.function).rstrip("/") + spec.push.path
                    sub.modify_push_config(request={
                        "subscription": sub.subscription_path(project, spec.name),
                        "push_config": {"push_endpoint": endpoint}})
    finally:
        sub.close()
