"""Which earlier MERGE attempt a consolidation records instead of merging again (batchline/flows/merge_record.py)."""

from __future__ import annotations

import pytest

from batchline.flows import merge_record as merge_recovery


@pytest.mark.parametrize(("states", "rejected", "chosen"), [
    ({}, set(), None),
    ({(0, 0): merge_recovery.MISSING, (0, 1): merge_recovery.FAILED}, set(), None),
    ({(0, 0): merge_recovery.FAILED, (0, 1): merge_recovery.SUCCEEDED}, set(), (0, 1)),
    ({(0, 0): merge_recovery.SUCCEEDED}, {(0, 0)}, None),
    ({(0, 0): merge_recovery.SUCCEEDED, (1, 0): merge_recovery.RUNNING}, set(), (1, 0)),
])
def test_which_attempt_is_recorded_instead_of_a_new_merge(states, rejected, chosen):
    assert merge_recovery.choose(states, rejected) == chosen
