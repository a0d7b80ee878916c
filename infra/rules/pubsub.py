"""Rules on Pub/Sub: every source subscription dead-letters within Google's bounds and every
subscription retries and never expires, every dead-letter topic is read and its service-agent grants
exist, the deployed subscriptions are the shared topology's, and the delivery policy carries the
largest burst at its target's cap (infra/capacity.py)."""

from __future__ import annotations

from typing import Any

from infra import capacity, limits
from infra.access import PUBLISHER_ROLE, PUBSUB_AGENT_MEMBER, SUBSCRIBER_ROLE
from infra.labels import BURST_LABEL, FUNCTION_LABEL, ITEM_MS_LABEL
from infra.resource_types import T_SUB, T_SUB_IAM, T_TOPIC, T_TOPIC_IAM
from infra.rules.engine import Finding, Needs, rule
from infra.rules.reading import function_uris, last_part, split_endpoint, target_function
from infra.shared import topology
from infra.view import UNKNOWN, Stack, number, seconds


def _dead_letter_topics(stack: Stack) -> set[str]:
    return {last_part((s.props.get("deadLetterPolicy") or {}).get("deadLetterTopic"))
            for s in stack.of_type(T_SUB) if s.props.get("deadLetterPolicy")} - {None}


def _within(value: Any, bounds: limits.Range) -> bool:
    return value is not None and bounds.holds(value)


def _delivery_problems(i: dict[str, Any], is_reader: bool, topics: set[str]) -> list[str]:
    """What is wrong with one subscription's delivery inputs."""
    out = []
    dlp = i.get("deadLetterPolicy")
    if not is_reader and not dlp:
        out.append("source subscription has no dead-letter policy")
    elif not is_reader:
        attempts = dlp.get("maxDeliveryAttempts")
        if not _within(attempts, limits.MAX_DELIVERY_ATTEMPTS):
            out.append(f"max delivery attempts {attempts} outside {tuple(limits.MAX_DELIVERY_ATTEMPTS)}")
        if last_part(dlp.get("deadLetterTopic")) not in topics:
            out.append(f"dead-letter topic {dlp.get('deadLetterTopic')} is not a topic of this stack")
    elif dlp:
        out.append("a dead-letter reader must not dead-letter itself")
    rp = i.get("retryPolicy")
    if not rp:
        out.append("no retry policy")
    else:
        lo, hi = seconds(rp.get("minimumBackoff")), seconds(rp.get("maximumBackoff"))
        if lo is None or hi is None or not limits.BACKOFF_S.lo <= lo <= hi <= limits.BACKOFF_S.hi:
            out.append(f"retry backoff {rp} outside {tuple(limits.BACKOFF_S)} s or min > max")
    ack = i.get("ackDeadlineSeconds")
    if not _within(ack, limits.ACK_DEADLINE_S):
        out.append(f"ack deadline {ack} outside {tuple(limits.ACK_DEADLINE_S)}")
    if (i.get("expirationPolicy") or {}).get("ttl") != "":
        out.append("subscription may expire (set expiration_policy ttl to '' = never)")
    return out


@rule("subscription-delivery", mandatory=False, needs=Needs.CONFIG)
def subscription_delivery(stack: Stack) -> list[Finding]:
    """Every source subscription dead-letters within bounds; every subscription has a retry policy,
    an ack deadline within bounds and never expires."""
    dlq_topics = _dead_letter_topics(stack)
    topics = {t.props.get("name") for t in stack.of_type(T_TOPIC)}
    return [Finding("subscription-delivery", s.name, why) for s in stack.of_type(T_SUB)
            for why in _delivery_problems(dict(s.props), last_part(s.props.get("topic")) in dlq_topics, topics)]


@rule("dead-letter-readers-and-grants", mandatory=False, needs=Needs.CONFIG)
def dead_letter_readers_and_grants(stack: Stack) -> list[Finding]:
    """Every dead-letter topic has a pull subscription and the service agent may publish to it; the
    service agent may subscribe to every dead-lettering source subscription."""
    name = "dead-letter-readers-and-grants"
    out: list[Finding] = []
    subs = stack.of_type(T_SUB)
    topic_grants = {(g.props.get("topic"), g.props.get("role")) for g in stack.of_type(T_TOPIC_IAM)
                    if PUBSUB_AGENT_MEMBER.fullmatch(str(g.props.get("member")))}
    sub_grants = {(g.props.get("subscription"), g.props.get("role")) for g in stack.of_type(T_SUB_IAM)
                  if PUBSUB_AGENT_MEMBER.fullmatch(str(g.props.get("member")))}
    for dlq in sorted(_dead_letter_topics(stack)):
        readers = [s for s in subs if last_part(s.props.get("topic")) == dlq]
        if not any(not s.props.get("pushConfig") for s in readers):
            out.append(Finding(name, dlq, "dead-letter topic has no pull subscription: its messages would be dropped"))
        if (dlq, PUBLISHER_ROLE) not in topic_grants:
            out.append(Finding(name, dlq, f"Pub/Sub service agent lacks {PUBLISHER_ROLE} on the dead-letter topic"))
    for s in subs:
        if s.props.get("deadLetterPolicy") and (s.props.get("name"), SUBSCRIBER_ROLE) not in sub_grants:
            out.append(Finding(name, s.name, f"Pub/Sub service agent lacks {SUBSCRIBER_ROLE} on the source "
                                             f"subscription"))
    return out


def deployed_edges(stack: Stack) -> set[tuple[str | None, str | None, str | None, str | None]]:
    """(topic, subscription, push function, push path) of every registered subscription: the shape of
    `Topology.edges()`."""
    uris = function_uris(stack)
    deployed = set()
    for s in stack.of_type(T_SUB):
        push = s.props.get("pushConfig")
        fn, path = split_endpoint(push.get("pushEndpoint", ""), uris) if push else (None, None)
        deployed.add((last_part(s.props.get("topic")), s.props.get("name"), fn, path))
    return deployed


@rule("topology", mandatory=False, needs=Needs.CONFIG)
def deployed_topology(stack: Stack) -> list[Finding]:
    """The deployed topics/subscriptions/push targets equal the shared topology (which the local stack
    also builds)."""
    deployed = deployed_edges(stack)
    expected = topology.build_topology(stack.config.pubsub.topic_prefix).edges()
    out = [Finding("topology", str(e[1]), f"deployed but not in the shared topology: {e}")
           for e in sorted(deployed - expected, key=str)]
    out += [Finding("topology", str(e[1]), f"in the shared topology but not deployed: {e}")
            for e in sorted(expected - deployed, key=str)]
    return out


def _label_number(value: object) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


@rule("delivery-fits-caps", mandatory=True)
def delivery_fits_caps(stack: Stack) -> list[Finding]:
    """Every dead-lettering push subscription carries its largest burst at its target's cap: Cloud Run's
    429s at max instances x concurrency, each a delivery attempt, never exhaust a healthy message's
    attempts (infra/capacity.py)."""
    out = []
    for s in stack.of_type(T_SUB):
        fn = target_function(stack, s, "pushConfig") if s.get("deadLetterPolicy") and s.get("pushConfig") else None
        if fn is None:
            continue  # not a dead-lettering push subscription, or a push to nothing of ours (authenticated-calls)
        burst, item_ms = _label_number(s.label(BURST_LABEL)), _label_number(s.label(ITEM_MS_LABEL))
        if not burst or not item_ms:
            out.append(Finding("delivery-fits-caps", s.name, f"no capacity plan: labels {BURST_LABEL} and "
                                                             f"{ITEM_MS_LABEL} must be positive integers"))
            continue
        instances = number(fn.get("serviceConfig", "maxInstanceCount"))
        concurrency = number(fn.get("serviceConfig", "maxInstanceRequestConcurrency"))
        attempts = number(s.get("deadLetterPolicy", "maxDeliveryAttempts"))
        backoff = seconds(s.get("retryPolicy", "minimumBackoff"))
        if None in (instances, concurrency, attempts, backoff) or UNKNOWN in (instances, attempts):
            out.append(Finding("delivery-fits-caps", s.name, f"cannot read {fn.name}'s max instances and concurrency "
                                                             f"or the subscription's attempts and minimum backoff"))
            continue
        slots = capacity.slots_of(str(fn.label(FUNCTION_LABEL)), int(instances), int(concurrency))
        v = capacity.verdict(burst, slots, item_ms / 1000, int(attempts), backoff)
        if not v.ok:
            out.append(Finding("delivery-fits-caps", s.name, f"into {fn.name}: {v.problem()}"))
    return out


RULES = (subscription_delivery, dead_letter_readers_and_grants, deployed_topology, delivery_fits_caps)
