"""Pub/Sub from the shared topology (`batchline.topology`), never redefined here.

For every topic: the topic; for every source subscription a dead-letter policy, a retry policy and an
ack deadline from stack config; for every topic that dead-letters: its dead-letter topic with a pull
subscription that keeps the messages (a dead-letter topic without a subscription drops them) and a push
subscription to the coordinator's `/dead-letters/<key>`. The Pub/Sub service agent gets publisher on
each dead-letter topic and subscriber on each source subscription: without those two grants
dead-lettering silently does nothing. Push subscriptions authenticate with OIDC tokens of the push
service account. No subscription ever expires (the default is 31 days without activity, which would
delete a quiet dead-letter subscription).
"""

from __future__ import annotations

from dataclasses import replace

import pulumi
import pulumi_gcp as gcp

from batchline.topology import DeliveryPolicy, SubscriptionSpec, Topology
from infra import capacity as cap_model
from infra.access import DEAD_LETTER_LABEL, OPERATOR_ACCESS, TOPIC_LABEL
from infra.components.iam import ACCESS, operator_slug
from infra.config import CapacityConfig, PubSubConfig
from infra.config_capacity import item_s_of

DLQ_READER_POLICY = DeliveryPolicy(ack_deadline_s=60, max_delivery_attempts=5, min_backoff_s=10,
                                   max_backoff_s=600, retention_s=7 * 24 * 3600)


class PubSub(pulumi.ComponentResource):
    def __init__(self, name: str, project: str, topology: Topology, cfg: PubSubConfig,
                 uris: dict[str, pulumi.Input[str]], push_email: pulumi.Input[str],
                 push_account: gcp.serviceaccount.Account,
                 members: dict[str, pulumi.Input[str]], agent: gcp.projects.ServiceIdentity,
                 operators: tuple[str, ...] = (), capacity: CapacityConfig | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:PubSub", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def on(resource: pulumi.Resource) -> pulumi.ResourceOptions:
            """A grant on a resource is replaced together with it: a topic or subscription recreated
            under the same name starts without bindings, and the grant would show no diff."""
            return pulumi.ResourceOptions(parent=self, replace_with=[resource])

        agent_member = agent.member  # the Pub/Sub service agent, as the API reports it
        # the service agent mints the OIDC tokens of our push subscriptions
        gcp.serviceaccount.IAMMember(f"{name}-agent-token-creator", service_account_id=push_account.name,
                                     role="roles/iam.serviceAccountTokenCreator", member=agent_member,
                                     opts=on(push_account))
        self.topics: dict[str, gcp.pubsub.Topic] = {}
        self.dead_letter_topics: dict[str, gcp.pubsub.Topic] = {}
        self.subscriptions: dict[str, gcp.pubsub.Subscription] = {}
        self.dead_letter_pull: dict[str, gcp.pubsub.Subscription] = {}
        labels = {"app": "batchline", "stack-prefix": topology.prefix}

        def subscription(spec: SubscriptionSpec, topic: gcp.pubsub.Topic, policy: DeliveryPolicy,
                         dlq: gcp.pubsub.Topic | None, extra: dict[str, str] | None = None) -> gcp.pubsub.Subscription:
            push = None
            if spec.push is not None:
                uri = uris[spec.push.function]
                push = {"push_endpoint": pulumi.Output.concat(uri, spec.push.path),
                        "oidc_token": {"service_account_email": push_email, "audience": uri}}
            return gcp.pubsub.Subscription(
                spec.name, project=project, name=spec.name, topic=topic.id, labels={**labels, **(extra or {})},
                ack_deadline_seconds=policy.ack_deadline_s,
                message_retention_duration=f"{policy.retention_s}s",
                retain_acked_messages=False,
                expiration_policy={"ttl": ""},  # never expire
                retry_policy={"minimum_backoff": f"{policy.min_backoff_s}s",
                              "maximum_backoff": f"{policy.max_backoff_s}s"},
                dead_letter_policy=({"dead_letter_topic": dlq.id,
                                     "max_delivery_attempts": policy.max_delivery_attempts}
                                    if dlq is not None else None),
                push_config=push, opts=child)

        for t in topology.topics:
            topic = gcp.pubsub.Topic(t.name, project=project, name=t.name, labels={**labels, TOPIC_LABEL: t.key},
                                     opts=child)
            self.topics[t.key] = topic
            dlq = None
            if any(s.dead_letter for s in t.subscriptions):
                dlq = gcp.pubsub.Topic(t.dead_letter_topic, project=project, name=t.dead_letter_topic,
                                       labels=labels, opts=child)
                self.dead_letter_topics[t.key] = dlq
                gcp.pubsub.TopicIAMMember(f"{t.dead_letter_topic}-agent-publisher", project=project,
                                          topic=dlq.name, role="roles/pubsub.publisher", member=agent_member,
                                          opts=on(dlq))
                for reader in topology.dead_letter_subscriptions(t):
                    policy = DLQ_READER_POLICY if reader.push is None else replace(
                        DLQ_READER_POLICY, ack_deadline_s=cfg.dead_letter_push_ack_s)  # >= coordinator timeout
                    # the pull reader is labelled with its topic key: the rules see which grant is on which
                    sub = subscription(reader, dlq, policy, None,
                                       {DEAD_LETTER_LABEL: t.key} if reader.push is None else None)
                    self.subscriptions[reader.name] = sub
                    if reader.push is None:
                        self.dead_letter_pull[t.key] = sub
            for spec in t.subscriptions:
                policy = cfg.policies[t.key]
                plan = None
                if spec.dead_letter and spec.push is not None:  # what the delivery-fits-caps rule checks
                    c = capacity or CapacityConfig()
                    plan = {cap_model.BURST_LABEL: str(cap_model.burst_of(t.key, c.largest_batch_items)),
                            cap_model.ITEM_MS_LABEL: str(round(item_s_of(c, spec.push.function) * 1000))}
                sub = subscription(spec, topic, policy, dlq if spec.dead_letter else None, plan)
                self.subscriptions[spec.name] = sub
                if spec.dead_letter:
                    gcp.pubsub.SubscriptionIAMMember(f"{spec.name}-agent-subscriber", project=project,
                                                     subscription=sub.name, role="roles/pubsub.subscriber",
                                                     member=agent_member, opts=on(sub))
        # functions publish only to the topics ACCESS lists for them, and pull only the dead letters it
        # lists; each operator (stack config) gets OPERATOR_ACCESS's topics and dead letters
        grantees = [(who, members[who], ACCESS[who]) for who in ACCESS if who in members]
        grantees += [(f"operator-{operator_slug(m)}", m, OPERATOR_ACCESS) for m in operators]
        for who, member, access in grantees:
            for key in access.publishes_to:
                gcp.pubsub.TopicIAMMember(f"{topology.topic(key).name}-{who}-publisher", project=project,
                                          topic=self.topics[key].name, role="roles/pubsub.publisher",
                                          member=member, opts=on(self.topics[key]))
            for key in access.reads_dead_letters:
                sub = self.dead_letter_pull[key]
                gcp.pubsub.SubscriptionIAMMember(f"{topology.topic(key).dead_letter_pull_subscription}-{who}-subscriber",
                                                 project=project, subscription=sub.name,
                                                 role="roles/pubsub.subscriber", member=member, opts=on(sub))
        self.register_outputs({
            "topics": {k: v.name for k, v in self.topics.items()},
            "dead_letter_pull_subscriptions": {k: v.name for k, v in self.dead_letter_pull.items()},
        })
