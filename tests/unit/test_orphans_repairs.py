"""The reconciliation's pure decisions: what to do with an orphaned staging table, whether a repair
may start, and the date's orphan-merge lease."""

from __future__ import annotations

import datetime as dt

import pytest

from batchline.adapters import manifests
from batchline.adapters.merge import merge_job_id
from batchline.adapters.merge_sql import verify_sql
from batchline.domain.accounting import ORPHAN_GENERATION_BASE
from batchline.domain.evidence import classify
from batchline.domain.runs import decide_repair, orphan_merge_held
from batchline.flows.orphans import table_date
from batchline.settings import Settings

T0 = dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC)
OLD, ME, NEW = "20300101_000000000001", "20300101_000000000002", "20300101_000000000003"
CREATED = {OLD: T0, ME: T0 + dt.timedelta(hours=1), NEW: T0 + dt.timedelta(hours=2)}
SCHEDULE = {"player_0001", "player_0002"}


@pytest.mark.parametrize(("owners", "verdict", "detail"), [
    (set(), "merge", ""),  # a gap
    ({ME}, "merge", ""),  # its own rows: an idempotent re-merge
    ({OLD}, "merge", ""),  # rows of an older run: this run is newer
    ({OLD, ME}, "merge", ""),
    ({NEW}, "drop", NEW),  # a newer run's rows: merging would overwrite them with older ones
    ({OLD, NEW}, "drop", NEW),
    ({"20300101_00000000000f"}, "keep", "20300101_00000000000f"),  # rows of a batch nobody dates
])
def test_classify_by_who_owns_the_active_rows(owners, verdict, detail):
    got, why = classify("player_0001", SCHEDULE, owners, ME, CREATED[ME], CREATED)
    assert got == verdict and detail in why


@pytest.mark.parametrize("item", [None, "player_0099"])
def test_an_unscheduled_or_unknown_item_is_kept(item):
    assert classify(item, SCHEDULE, set(), ME, CREATED[ME], CREATED)[0] == "keep"


def test_a_repair_is_recorded_and_the_same_gap_refused_until_forced():
    first, record = decide_repair({}, ["player_0002"], "b1", repeat=False)
    assert first is None and record == {"repaired_items": ["player_0002"], "last_repair_batch_id": "b1"}
    again, none = decide_repair(record, ["player_0002"], "b2", repeat=False)
    assert again == "b1" and none is None
    forced, record2 = decide_repair(record, ["player_0002"], "b2", repeat=True)
    assert forced is None and record2["last_repair_batch_id"] == "b2"
    # a gap with a new item is repaired (all of it), and the record accumulates
    _, record3 = decide_repair(record, ["player_0002", "player_0005"], "b3", repeat=False)
    assert record3["repaired_items"] == ["player_0002", "player_0005"]
    # a subset of what was repaired is the same gap, persisting
    assert decide_repair(record3, ["player_0005"], "b4", repeat=False) == ("b3", None)


def test_the_orphan_lease_holds_only_while_live():
    now = T0
    assert not orphan_merge_held({}, now)
    assert orphan_merge_held({"orphan_merge_token": "t", "orphan_merge_until": now + dt.timedelta(minutes=1)}, now)
    assert not orphan_merge_held({"orphan_merge_token": "t", "orphan_merge_until": now}, now)
    assert not orphan_merge_held({"orphan_merge_token": None, "orphan_merge_until": now + dt.timedelta(hours=1)}, now)


def test_orphan_verification_counts_only_the_merged_items():
    main, pinned = "`p.d.t`", manifests.items_sql(Settings())
    assert "manifest" not in verify_sql(main), "a batch's own consolidation verifies all its rows"
    sql = verify_sql(main, pinned)
    assert f"batch_id = @batch_id AND player_lookup IN ({pinned}) GROUP BY player_lookup" in sql
    assert sql.replace(f" AND player_lookup IN ({pinned})", "") == verify_sql(main)
    assert "manifest_pin = @pin AND manifest_kind = 'merge'" in pinned


def test_orphan_merge_job_ids_never_collide_with_the_batch_consolidation():
    batch = "20300101_0123456789ab"
    own = {merge_job_id(batch, g, a) for g in range(ORPHAN_GENERATION_BASE) for a in range(10)}
    assert merge_job_id(batch, ORPHAN_GENERATION_BASE, 0) not in own


def test_a_table_belongs_to_its_batch_documents_date_else_to_the_date_its_id_begins_with():
    assert table_date(OLD, {"game_date": "2030-02-03"}) == dt.date(2030, 2, 3), "the document decides"
    assert table_date(OLD, None) == dt.date(2030, 1, 1)
    assert table_date("20301399_000000000001", None) is None, "an id naming no date belongs to no date"
