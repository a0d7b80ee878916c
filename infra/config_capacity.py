"""`batchline:capacity` against the rest of the stack config: no message holds a slot longer than its
function's timeout, and the caps and delivery policies carry the largest batch without dead-lettering
healthy messages (infra/capacity.py), for the normal caps and the emergency profile alike: a profile
that cannot carry the batch is refused now, not discovered in an emergency."""

from __future__ import annotations

from infra import capacity
from infra.config_fields import ConfigError, key
from infra.config_types import CapacityConfig, FunctionsConfig, PubSubConfig
from infra.shared import topology

# the functions a message holds a slot of, and the capacity key saying for how long
ITEM_KEYS = {topology.WORKER: "worker_item_s", topology.COORDINATOR: "coordinator_item_s"}


def check_capacity(cap: CapacityConfig, functions: FunctionsConfig, pubsub: PubSubConfig) -> CapacityConfig:
    """`cap`, or a ConfigError naming the keys to change."""
    for fn, item_key in ITEM_KEYS.items():
        timeout = functions.longest_timeout_s(fn)
        if cap.item_s(fn) > timeout:
            raise ConfigError(f"{key(f'capacity.{item_key}')} ({cap.item_s(fn):g}) exceeds "
                              f"{key(f'functions.{fn}.timeout_s')} ({timeout}): no request holds a slot longer "
                              f"than its timeout")
    check_carried(cap, functions, pubsub)
    return cap


def check_carried(cap: CapacityConfig, functions: FunctionsConfig, pubsub: PubSubConfig) -> None:
    """ConfigError naming the keys if a dead-lettering push subscription cannot carry its burst."""
    modes = {"functions": functions.normal_caps or functions.caps, "emergency_profile": functions.profile_caps}
    for t in topology.build_topology(pubsub.topic_prefix).topics:
        for s in t.subscriptions:
            if s.push is None or not s.dead_letter or s.push.function not in ITEM_KEYS:
                continue
            policy = pubsub.policies[t.key]
            for mode, caps in modes.items():
                fc = caps.get(s.push.function) if caps else None
                if fc is None:
                    continue
                v = capacity.verdict(capacity.burst_of(t.key, cap.largest_batch_items),
                                     capacity.slots_of(s.push.function, fc.max_instances, fc.concurrency),
                                     cap.item_s(s.push.function), policy.max_delivery_attempts, policy.min_backoff_s)
                if not v.ok:
                    raise ConfigError(
                        f"{s.name} cannot carry {key('capacity.largest_batch_items')} "
                        f"({cap.largest_batch_items}) under {key(f'{mode}.{s.push.function}')} "
                        f"({fc.max_instances} instances x {fc.concurrency}): {v.problem()}; raise "
                        f"{key(f'pubsub.per_topic.{t.key}.max_delivery_attempts')} or the caps, or lower the "
                        f"batch (infra/capacity.py)")
