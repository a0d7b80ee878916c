"""Which earlier MERGE attempt a consolidation records instead of merging again (batchline/flows/merge_record.py)."""

from __future__ import annotations

import pytest

from batchline.adapters.merge_jobs import FAILED, MISSING, RUNNING, SUCCEEDED
from batchline.flows import merge_record as merge_recovery


@pytest.mark.parametrize(("states", "rejected", "chosen"), [
    ({}, set(), None),
    ({(0, 0): MISSING, (0, 1): FAILED}, set(), None),
    ({(0, 0): FAILED, (0, 1): SUCCEEDED}, set(), (0, 1)),
    ({(0, 0): SUCCEEDED}, {(0, 0)}, None),
    ({(0, 0): SUCCEEDED, (1, 0): RUNNING}, set(), (1, 0)),
])
def test_which_attempt_is_recorded_instead_of_a_new_merge(states, rejected, chosen):
    assert merge_recovery.choose(states, rejected) == chosen
