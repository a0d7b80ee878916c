"""Scratch tables of a chunked consolidation never pass for an item's staging table."""

from __future__ import annotations

import pytest

from batchline import ids

BATCH = "20300101_abcdefabcdef"


def test_combined_tables_are_not_item_tables():
    name = ids.combined_table_name(BATCH, 3)
    assert ids.validate_table_name(name) == name and name.startswith(ids.COMBINED_PREFIX)
    assert ids.item_of_staging_table(BATCH, name) is None
    assert not name.startswith(ids.staging_prefix(BATCH))
    assert len({ids.combined_table_name(BATCH, n) for n in range(50)}) == 50


@pytest.mark.parametrize("n", [-1, 10_000])
def test_chunk_numbers_are_bounded(n):
    with pytest.raises(ValueError):
        ids.combined_table_name(BATCH, n)


def test_combined_name_rejects_a_bad_batch_id():
    with pytest.raises(ValueError):
        ids.combined_table_name("x`; drop", 0)
