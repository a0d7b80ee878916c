"""infra/capacity.py's bound against the message-by-message simulation (infra/delivery_sim.py), and the
config check built on it: whatever the bound accepts, the simulated burst delivers with no dead letter
(also when requests take less than their estimate); where retries cannot overlap, the bound is exact;
pacing at the cap's rate makes no 429 at all; a stack whose caps (normal or emergency) cannot carry its
largest batch is refused with the keys to change."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra import capacity
from infra import config as config_mod
from infra.config import ConfigError
from infra.delivery_sim import Scenario, simulate

params = st.fixed_dictionaries({
    "items": st.integers(1, 400), "slots": st.integers(1, 30),
    "item_s": st.sampled_from([0.5, 1.0, 2.0, 3.0, 7.0, 15.0]),
    "attempts": st.integers(5, 12), "min_backoff_s": st.sampled_from([0.0, 1.0, 5.0, 10.0, 30.0]),
})


@settings(max_examples=150, deadline=None)
@given(p=params, item_jitter=st.sampled_from([0.0, 0.5]), seed=st.integers(0, 3))
def test_what_the_bound_accepts_the_simulated_burst_delivers_whole(p, item_jitter, seed):
    needed = capacity.attempts_needed(p["items"], p["slots"], p["item_s"], p["min_backoff_s"])
    if needed is None or needed > p["attempts"]:
        return
    out = simulate(Scenario(**p, item_jitter=item_jitter, seed=seed))
    assert out.dead_letters == 0 and out.delivered == p["items"], (needed, out)
    assert out.max_attempts_used <= needed


@settings(max_examples=80, deadline=None)
@given(p=params)
def test_the_bound_is_exact_when_retries_cannot_overlap_the_last_round(p):
    if p["min_backoff_s"] < p["item_s"]:
        return
    needed = capacity.attempts_needed(p["items"], p["slots"], p["item_s"], p["min_backoff_s"])
    out = simulate(Scenario(**p))
    assert (out.dead_letters == 0) == (needed is not None and needed <= p["attempts"])
    if out.dead_letters == 0:
        assert out.max_attempts_used == needed


def test_the_emergency_cap_needs_9_attempts_for_a_burst_of_500_and_none_when_paced():
    burst = Scenario(items=500, slots=12, item_s=2.0, attempts=10, min_backoff_s=10)
    assert capacity.attempts_needed(500, 12, 2.0, 10) == 9
    assert simulate(burst).dead_letters == 0 and simulate(burst).max_attempts_used == 9
    assert simulate(Scenario(**{**burst.__dict__, "attempts": 8})).dead_letters > 0
    paced = simulate(Scenario(**{**burst.__dict__, "publish_rate": capacity.dispatch_rate(12, 2.0)}))
    assert paced.rejected_429 == 0 and paced.delivered == 500


def test_slots_set_aside_for_the_coordinators_long_requests():
    assert capacity.slots_of("coordinator", 5, 10) == 46 and capacity.slots_of("worker", 4, 3) == 12
    assert capacity.slots_of("coordinator", 1, 2) == 0
    assert capacity.attempts_needed(10, 0, 3.0, 10) is None


def _raw(**over) -> dict:
    raw = {"gcp": {"project": "batchline-dev"},
           "schedules": {k: {"cron": "0 1 * * *"} for k in ("start", "stall_check", "reconcile")},
           "notifications": {"emails": ["a@example.com"]}}
    raw.update(over)
    return raw


def test_a_stack_that_cannot_carry_its_largest_batch_is_refused():
    small = {"worker": {"max_instances": 5, "concurrency": 2}}
    with pytest.raises(ConfigError, match=r"batchline-work-push .*needs 10 attempts, 5 allowed.*"
                                          r"batchline:pubsub.per_topic.work.max_delivery_attempts"):
        config_mod.load(_raw(functions=small))
    ok = config_mod.load(_raw(functions=small, pubsub={"per_topic": {"work": {"max_delivery_attempts": 10}}}))
    assert ok.capacity.largest_batch_items == 500
    assert config_mod.load(_raw(functions=small, capacity={"largest_batch_items": 250})).capacity.worker_item_s == 2.0


def test_the_emergency_profile_is_checked_while_it_is_off():
    with pytest.raises(ConfigError, match=r"batchline:emergency_profile.worker \(1 instances x 3\)"):
        config_mod.load(_raw(emergency_profile={"worker": {"max_instances": 1, "concurrency": 3}}))


@pytest.mark.parametrize("capacity_raw, match", [
    ({"largest_batch_items": 0}, "largest_batch_items must be between 1"),
    ({"worker_item_s": 121}, r"worker_item_s \(121\) exceeds batchline:functions.worker.timeout_s"),
    ({"workers": 1}, "unknown"),
])
def test_capacity_values_are_validated(capacity_raw, match):
    with pytest.raises(ConfigError, match=match):
        config_mod.load(_raw(capacity=capacity_raw))


def test_the_coordinator_is_told_the_pace_of_the_caps_in_force(prod_raw):
    from infra.function_spec import function_settings

    normal = function_settings(config_mod.load(prod_raw, has_slack_token=True))
    emergency = function_settings(config_mod.load({**prod_raw, "emergency": True}, has_slack_token=True))
    assert (normal.dispatch_rate, normal.dispatch_budget_s) == (50.0, 324)  # 20 x 5 slots / 2 s; 60% of 540 s
    assert emergency.dispatch_rate == 6.0  # 4 x 3 / 2 s
