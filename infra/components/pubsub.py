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

from dataclasses import dataclass, field, replace

import pulumi
import pulumi_gcp as gcp

from infra import capacity
from infra.access import PUBLISHER_ROLE, SUBSCRIBER_ROLE, TOKEN_CREATOR_ROLE
from infra.components.iam import grantees
from infra.config_types import CapacityConfig, PubSubConfig
from infra.labels import BURST_LABEL, DEAD_LETTER_LABEL, ITEM_MS_LABEL, TOPIC_LABEL, stack_labels
from infra.shared import topology

DLQ_READER_POLICY = topology.DeliveryPolicy(ack_deadline_s=60, max_delivery_attempts=5, min_backoff_s=10,
                                            max_backoff_s=600, retention_s=7 * 24 * 3600)


@dataclass
class PubSubArgs:
    project: str
    topology: topology.Topology
    cfg: PubSubConfig
    capacity: CapacityConfig  # the burst each dead-lettering push subscription must carry (a label)
    uris: dict[str, pulumi.Input[str]]  # function -> its URL, the push endpoints' base
    push_account: gcp.serviceaccount.Account  # push OIDC tokens are minted for it
    members: dict[str, pulumi.Input[str]]  # the functions' `serviceAccount:` members (publishers)
    agent: gcp.projects.ServiceIdentity  # the Pub/Sub service agent
    operators: tuple[str, ...] = field(default_factory=tuple)


class PubSub(pulumi.ComponentResource):
    topics: dict[str, gcp.pubsub.Topic]  # topic key -> topic
    dead_letter_topics: dict[str, gcp.pubsub.Topic]
    subscriptions: dict[str, gcp.pubsub.Subscription]  # subscription name -> subscription
    dead_letter_pull: dict[str, gcp.pubsub.Subscription]  # topic key -> its dead-letter pull subscription

    def __init__(self, name: str, args: PubSubArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:PubSub", name, None, opts)
        self._name, self._args = name, args
        self._labels = stack_labels(args.topology.prefix)
        self.topics, self.dead_letter_topics, self.subscriptions, self.dead_letter_pull = {}, {}, {}, {}
        self._agent_mints_push_tokens()
        for t in args.topology.topics:
            self.topics[t.key] = self._topic(t.name, {TOPIC_LABEL: t.key})
            dlq = self._dead_letters(t) if any(s.dead_letter for s in t.subscriptions) else None
            self._source_subscriptions(t, dlq)
        self._grant_publishers_and_readers()
        self.register_outputs({
            "topics": {k: v.name for k, v in self.topics.items()},
            "dead_letter_pull_subscriptions": {k: v.name for k, v in self.dead_letter_pull.items()},
        })

    def _replaced_with(self, resource: pulumi.Resource) -> pulumi.ResourceOptions:
        """A grant on a resource is replaced together with it: a topic or subscription recreated under
        the same name starts without bindings, and the grant would show no diff."""
        return pulumi.ResourceOptions(parent=self, replace_with=[resource])

    def _agent_mints_push_tokens(self) -> None:
        push_account = self._args.push_account
        gcp.serviceaccount.IAMMember(f"{self._name}-agent-token-creator", service_account_id=push_account.name,
                                     role=TOKEN_CREATOR_ROLE, member=self._args.agent.member,
                                     opts=self._replaced_with(push_account))

    def _topic(self, topic_name: str, labels: dict[str, str] | None = None) -> gcp.pubsub.Topic:
        return gcp.pubsub.Topic(topic_name, project=self._args.project, name=topic_name,
                                labels={**self._labels, **(labels or {})}, opts=pulumi.ResourceOptions(parent=self))

    def _subscription(self, spec: topology.SubscriptionSpec, topic: gcp.pubsub.Topic, policy: topology.DeliveryPolicy,
                      dlq: gcp.pubsub.Topic | None, labels: dict[str, str] | None = None) -> gcp.pubsub.Subscription:
        push = None
        if spec.push is not None:
            uri = self._args.uris[spec.push.function]
            push = {"push_endpoint": pulumi.Output.concat(uri, spec.push.path),
                    "oidc_token": {"service_account_email": self._args.push_account.email, "audience": uri}}
        sub = gcp.pubsub.Subscription(
            spec.name, project=self._args.project, name=spec.name, topic=topic.id,
            labels={**self._labels, **(labels or {})},
            ack_deadline_seconds=policy.ack_deadline_s,
            message_retention_duration=f"{policy.retention_s}s",
            retain_acked_messages=False,
            expiration_policy={"ttl": ""},  # never expire
            retry_policy={"minimum_backoff": f"{policy.min_backoff_s}s", "maximum_backoff": f"{policy.max_backoff_s}s"},
            dead_letter_policy=({"dead_letter_topic": dlq.id, "max_delivery_attempts": policy.max_delivery_attempts}
                                if dlq is not None else None),
            push_config=push, opts=pulumi.ResourceOptions(parent=self))
        self.subscriptions[spec.name] = sub
        return sub

    def _dead_letters(self, t: topology.TopicSpec) -> gcp.pubsub.Topic:
        """The topic's dead-letter topic, the agent's publisher grant on it, and its two readers: a pull
        subscription that keeps the messages and a push subscription to the coordinator."""
        dlq = self.dead_letter_topics[t.key] = self._topic(t.dead_letter_topic)
        gcp.pubsub.TopicIAMMember(f"{t.dead_letter_topic}-agent-publisher", project=self._args.project,
                                  topic=dlq.name, role=PUBLISHER_ROLE, member=self._args.agent.member,
                                  opts=self._replaced_with(dlq))
        for reader in self._args.topology.dead_letter_subscriptions(t):
            if reader.push is None:  # labelled with its topic key: the rules see which grant is on which
                self.dead_letter_pull[t.key] = self._subscription(reader, dlq, DLQ_READER_POLICY, None,
                                                                  {DEAD_LETTER_LABEL: t.key})
            else:  # the push reader's ack deadline outlasts the coordinator's timeout
                policy = replace(DLQ_READER_POLICY, ack_deadline_s=self._args.cfg.dead_letter_push_ack_s)
                self._subscription(reader, dlq, policy, None)
        return dlq

    def _capacity_plan(self, t: topology.TopicSpec, spec: topology.SubscriptionSpec) -> dict[str, str] | None:
        """The labels `delivery-fits-caps` reads off a dead-lettering push subscription."""
        if not spec.dead_letter or spec.push is None:
            return None
        c = self._args.capacity
        return {BURST_LABEL: str(capacity.burst_of(t.key, c.largest_batch_items)),
                ITEM_MS_LABEL: str(round(c.item_s(spec.push.function) * 1000))}

    def _source_subscriptions(self, t: topology.TopicSpec, dlq: gcp.pubsub.Topic | None) -> None:
        for spec in t.subscriptions:
            sub = self._subscription(spec, self.topics[t.key], self._args.cfg.policies[t.key],
                                     dlq if spec.dead_letter else None, self._capacity_plan(t, spec))
            if spec.dead_letter:
                gcp.pubsub.SubscriptionIAMMember(f"{spec.name}-agent-subscriber", project=self._args.project,
                                                 subscription=sub.name, role=SUBSCRIBER_ROLE,
                                                 member=self._args.agent.member, opts=self._replaced_with(sub))

    def _grant_publishers_and_readers(self) -> None:
        """Functions publish only to the topics ACCESS lists for them, and pull only the dead letters it
        lists; each operator (stack config) gets OPERATOR_ACCESS's topics and dead letters."""
        project, topo = self._args.project, self._args.topology
        for g in grantees(self._args.members, self._args.operators):
            for key in g.access.publishes_to:
                gcp.pubsub.TopicIAMMember(f"{topo.topic(key).name}-{g.slug}-publisher", project=project,
                                          topic=self.topics[key].name, role=PUBLISHER_ROLE, member=g.member,
                                          opts=self._replaced_with(self.topics[key]))
            for key in g.access.reads_dead_letters:
                sub = self.dead_letter_pull[key]
                gcp.pubsub.SubscriptionIAMMember(f"{topo.topic(key).dead_letter_pull_subscription}-{g.slug}-subscriber",
                                                 project=project, subscription=sub.name, role=SUBSCRIBER_ROLE,
                                                 member=g.member, opts=self._replaced_with(sub))
