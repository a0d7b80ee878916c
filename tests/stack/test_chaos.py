"""A handful of random fault schedules on the real stack, each judged from the systems of record
(`batchline chaos` runs many more; the README quotes such a run)."""

from __future__ import annotations

import random

from batchline.local import chaos


def test_random_fault_schedules_lose_nothing_silently(stack):
    rng = random.Random(20261123)
    outcomes = [chaos.run_schedule(stack.info, stack.clients, chaos.draw(rng, n)) for n in range(3)]
    summary = chaos.summarize(outcomes)
    assert summary["items_lost"] == 0 and summary["duplicate_rows"] == 0, [o.problems for o in outcomes]
    assert summary["max_successful_merges_per_batch"] <= 1
    assert summary["failed_schedules"] == [], [o.as_dict() for o in outcomes if o.problems]
    assert sum(summary["faults_by_kind"].values()) > 0, "the schedules injected something"
    accounted = summary["merged"] + summary["dead_lettered_with_reason"] + summary["reported_missing"]
    assert accounted == summary["items"], "every expected item is in exactly one part"
