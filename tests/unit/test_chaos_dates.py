"""`batchline chaos --seed S`: the block of game dates a run uses fits the dates /start accepts, for
every seed and every number of schedules the command allows (issue 14: half of all seeds crashed)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchline.domain import ids
from batchline.local import chaos


@given(seed=st.integers(min_value=-(2**63), max_value=2**63), schedules=st.integers(1, chaos.MAX_SCHEDULES))
def test_every_seed_draws_a_block_of_dates_start_accepts(seed, schedules):
    start = chaos.block_start(random.Random(seed), schedules)
    first, last = chaos.schedule_day(start), chaos.schedule_day(start + schedules - 1)
    assert chaos.FIRST_DAY <= first <= last <= ids.LAST_GAME_DATE
    # the days themselves pass the validation /start applies
    assert ids.parse_game_date(first.isoformat()) == first and ids.parse_game_date(last.isoformat()) == last


def test_the_seed_that_crashed_now_fits_and_the_block_still_moves_with_the_seed():
    start = chaos.block_start(random.Random(31337), 25)
    assert chaos.schedule_day(start + 24) <= ids.LAST_GAME_DATE
    starts = {chaos.block_start(random.Random(seed), 25) for seed in range(50)}
    assert len(starts) > 40, "runs with different seeds use blocks of their own"
    # the last possible block ends exactly on the last valid date: the whole range is used
    assert chaos.schedule_day(chaos.DAYS_AVAILABLE - 1) == ids.LAST_GAME_DATE


def test_more_schedules_than_the_command_allows_are_refused():
    for bad in (0, chaos.MAX_SCHEDULES + 1):
        with pytest.raises(ValueError, match=str(chaos.MAX_SCHEDULES)):
            chaos.block_start(random.Random(1), bad)
