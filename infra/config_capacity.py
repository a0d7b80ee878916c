"""`batchline:capacity`: the largest batch and the seconds a message holds a slot, validated, and the
check that the caps and delivery policies carry that batch without dead-lettering healthy messages
(infra/capacity.py), for the normal caps and the emergency profile alike: a profile that cannot carry
the batch is refused now, not discovered in an emergency."""

from __future__ import annotations

from typing import Any

from batchline.topology import FUNCTIONS, build_topology
from infra import capacity
from infra.config_fields import ConfigError, _float, _int, _key, _obj
from infra.config_types import CapacityConfig, FunctionsConfig, PubSubConfig

LARGEST_BATCH_ITEMS = (1, 1_000_000)
ITEM_S = (0.01, 3600.0)
_ITEM_KEYS = {"worker": "worker_item_s", "coordinator": "coordinator_item_s"}


def item_s_of(cap: CapacityConfig, function: str) -> float:
    return cap.item_s(function)


def load_capacity(raw: Any, functions: FunctionsConfig, pubsub: PubSubConfig) -> CapacityConfig:
    p = "capacity"
    o = _obj(raw, p, tuple(CapacityConfig.model_fields))
    d = CapacityConfig()
    cap = CapacityConfig(
        largest_batch_items=_int(o, "largest_batch_items", p, d.largest_batch_items, LARGEST_BATCH_ITEMS),
        worker_item_s=_float(o, "worker_item_s", p, d.worker_item_s, ITEM_S),
        coordinator_item_s=_float(o, "coordinator_item_s", p, d.coordinator_item_s, ITEM_S))
    for fn, key in _ITEM_KEYS.items():
        timeout = functions.longest_timeout_s(fn)
        if getattr(cap, key) > timeout:
            raise ConfigError(f"{_key(f'{p}.{key}')} ({getattr(cap, key):g}) exceeds "
                              f"{_key(f'functions.{fn}.timeout_s')} ({timeout}): no request holds a slot longer "
                              f"than its timeout")
    check_carried(cap, functions, pubsub)
    return cap


def check_carried(cap: CapacityConfig, functions: FunctionsConfig, pubsub: PubSubConfig) -> None:
    """ConfigError naming the keys if a dead-lettering push subscription cannot carry its burst."""
    modes = {"functions": functions.normal_caps or functions.caps, "emergency_profile": functions.profile_caps}
    for t in build_topology(pubsub.topic_prefix).topics:
        for s in t.subscriptions:
            if s.push is None or not s.dead_letter or s.push.function not in _ITEM_KEYS:
                continue
            policy = pubsub.policies[t.key]
            for mode, caps in modes.items():
                fc = caps.get(s.push.function) if caps else None
                if fc is None:
                    continue
                v = capacity.verdict(capacity.burst_of(t.key, cap.largest_batch_items),
                                     capacity.slots_of(s.push.function, fc.max_instances, fc.concurrency),
                                     item_s_of(cap, s.push.function), policy.max_delivery_attempts,
                                     policy.min_backoff_s)
                if not v.ok:
                    raise ConfigError(
                        f"{s.name} cannot carry {_key('capacity.largest_batch_items')} "
                        f"({cap.largest_batch_items}) under {_key(f'{mode}.{s.push.function}')} "
                        f"({fc.max_instances} instances x {fc.concurrency}): {v.problem()}; raise "
                        f"{_key(f'pubsub.per_topic.{t.key}.max_delivery_attempts')} or the caps, or lower the "
                        f"batch (infra/capacity.py)")


assert set(_ITEM_KEYS) < set(FUNCTIONS)
