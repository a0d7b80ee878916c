"""Unit tests for batchline.topology: the Pub/Sub shape both the local stack and infra build."""

from __future__ import annotations

import dataclasses

import pytest

from batchline import topology as tp

COORDINATOR_ROUTES = {tp.PATH_START, tp.PATH_COMPLETIONS, tp.PATH_CONSOLIDATE, tp.PATH_STALL_CHECK, tp.PATH_CONTROL}


def _all_subscriptions(topo: tp.Topology):
    for t in topo.topics:
        for s in t.subscriptions:
            yield t.name, s
        if any(s.dead_letter for s in t.subscriptions):
            for s in topo.dead_letter_subscriptions(t):
                yield t.dead_letter_topic, s


def test_default_topology_keys():
    assert [t.key for t in tp.TOPOLOGY.topics] == ["work", "completions", "consolidation", "control", "summary"]
    assert tp.TOPOLOGY == tp.build_topology("batchline")


def test_topic_lookup():
    assert tp.TOPOLOGY.topic("work").name == "batchline-work"
    with pytest.raises(KeyError, match="nope"):
        tp.TOPOLOGY.topic("nope")


@pytest.mark.parametrize("prefix", ["batchline", "bl-dev", "x"])
def test_every_source_subscription_has_dlq_with_pull_reader_and_push_reader_when_handled(prefix):
    topo = tp.build_topology(prefix)
    edges = topo.edges()
    sources = [(t, s) for t in topo.topics for s in t.subscriptions if s.dead_letter]
    assert sources
    for t, _ in sources:
        dlq = t.dead_letter_topic
        readers = {e for e in edges if e[0] == dlq}
        pull = {e for e in readers if e[2] is None}
        push = {e for e in readers if e[2] is not None}
        assert pull == {(dlq, t.dead_letter_pull_subscription, None, None)}
        if t.dead_letter_handled:
            assert push == {(dlq, t.dead_letter_push_subscription, tp.COORDINATOR,
                             f"{tp.PATH_DEAD_LETTERS}/{t.key}")}
        else:
            assert push == set(), "an unhandled dead-letter topic must not push to a route that answers 400"
    assert {t.key for t, _ in sources if t.dead_letter_handled} == {"work", "completions", "consolidation", "control"}


def test_dead_letter_readers_do_not_dead_letter():
    for t in tp.TOPOLOGY.topics:
        for s in tp.TOPOLOGY.dead_letter_subscriptions(t):
            assert s.dead_letter is False
    # and no DLQ-of-a-DLQ topic appears
    assert not any(e[0].endswith("-dlq-dlq") for e in tp.TOPOLOGY.edges())


def test_edges_cover_every_subscription_exactly():
    topo = tp.TOPOLOGY
    expected = {(topic, s.name, s.push.function if s.push else None, s.push.path if s.push else None)
                for topic, s in _all_subscriptions(topo)}
    assert topo.edges() == expected
    # 5 source subscriptions + 2 readers per handled dead-letter topic + 1 (pull) per unhandled one
    readers = sum(1 + t.dead_letter_handled for t in topo.topics if any(s.dead_letter for s in t.subscriptions))
    assert len(topo.edges()) == sum(len(t.subscriptions) for t in topo.topics) + readers
    assert readers == 9


def test_topic_without_dead_lettering_subscriptions_gets_no_dlq():
    topo = tp.Topology("p", (tp.TopicSpec("k", "p-k", (tp.SubscriptionSpec("p-k-pull", None, dead_letter=False),)),))
    assert topo.edges() == {("p-k", "p-k-pull", None, None)}


@pytest.mark.parametrize("prefix", ["batchline", "bl-dev"])
def test_names_unique_and_prefixed(prefix):
    topo = tp.build_topology(prefix)
    topics = [t.name for t in topo.topics] + [t.dead_letter_topic for t in topo.topics]
    subs = [s.name for _, s in _all_subscriptions(topo)]
    assert len(set(topics)) == len(topics)
    assert len(set(subs)) == len(subs)
    assert len({t.key for t in topo.topics}) == len(topo.topics)
    for name in topics + subs:
        assert name.startswith(prefix + "-"), name
    for e in topo.edges():
        assert e[0].startswith(prefix + "-") and e[1].startswith(prefix + "-")
    assert topo.prefix == prefix


def test_prefixes_do_not_collide():
    a = {n for e in tp.build_topology("dev").edges() for n in e[:2]}
    b = {n for e in tp.build_topology("prod").edges() for n in e[:2]}
    assert not a & b


def test_push_targets_are_known_routes():
    for _, s in _all_subscriptions(tp.TOPOLOGY):
        if s.push is None:
            continue
        assert s.push.function in tp.FUNCTIONS
        if s.push.function == tp.COORDINATOR:
            path = s.push.path
            assert path in COORDINATOR_ROUTES or path.startswith(tp.PATH_DEAD_LETTERS + "/"), path
        elif s.push.function == tp.WORKER:
            assert s.push.path == tp.PATH_WORK
        else:
            assert s.push.path == tp.PATH_RECONCILE


def test_expected_push_wiring():
    edges = tp.TOPOLOGY.edges()
    assert ("batchline-work", "batchline-work-push", tp.WORKER, tp.PATH_WORK) in edges
    assert ("batchline-completions", "batchline-completions-push", tp.COORDINATOR, tp.PATH_COMPLETIONS) in edges
    assert ("batchline-consolidation", "batchline-consolidation-push", tp.COORDINATOR,
            tp.PATH_CONSOLIDATE) in edges
    assert ("batchline-summary", "batchline-summary-pull", None, None) in edges
    assert ("batchline-control", "batchline-control-push", tp.COORDINATOR, tp.PATH_CONTROL) in edges
    assert ("batchline-control-dlq", "batchline-control-dlq-push", tp.COORDINATOR,
            f"{tp.PATH_DEAD_LETTERS}/control") in edges


def test_coordinator_routes_are_distinct_paths():
    routes = [tp.PATH_START, tp.PATH_COMPLETIONS, tp.PATH_CONSOLIDATE, tp.PATH_STALL_CHECK, tp.PATH_DEAD_LETTERS,
              tp.PATH_CONTROL]
    assert len(set(routes)) == len(routes)
    assert all(r.startswith("/") and r != "/" for r in routes)


def test_every_dead_letter_push_source_is_handled_by_coordinator():
    from batchline.flows.dead_letters import DEAD_LETTER_SOURCES

    prefix = tp.PATH_DEAD_LETTERS + "/"
    sources = {e[3][len(prefix):] for e in tp.TOPOLOGY.edges() if e[3] and e[3].startswith(prefix)}
    assert sources <= set(DEAD_LETTER_SOURCES)


def _policies():
    yield tp.DeliveryPolicy()
    for _, s in _all_subscriptions(tp.TOPOLOGY):
        yield s.policy


def test_delivery_policies_within_pubsub_bounds():
    for p in _policies():
        assert 10 <= p.ack_deadline_s <= 600
        assert 5 <= p.max_delivery_attempts <= 100
        assert 0 <= p.min_backoff_s <= p.max_backoff_s <= 600
        assert 600 <= p.retention_s <= 7 * 24 * 3600


def test_specific_ack_deadlines():
    assert tp.TOPOLOGY.topic("work").subscriptions[0].policy.ack_deadline_s == 120
    assert tp.TOPOLOGY.topic("consolidation").subscriptions[0].policy.ack_deadline_s == 600
    assert tp.TOPOLOGY.topic("control").subscriptions[0].policy.ack_deadline_s == 600


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        tp.TOPOLOGY.topics[0].name = "x"  # type: ignore[misc]
