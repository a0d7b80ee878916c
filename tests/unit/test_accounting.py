"""batchline/domain/accounting.py and batchline/domain/item_shape.py: the one judgement of a batch every report
shares (issue 17.1, 17.2), without any I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchline.domain import accounting as acc
from batchline.domain.accounting import BatchFacts, judge, merge_job_id, merge_problems, parse_merge_job_id
from batchline.domain.item_shape import EXPECTED_PAIRS, Shape, rows_problem, shape_problem
from batchline.domain.schema import PREDICTION_PROPS, PREDICTION_SYSTEMS
from batchline.domain.statuses import CONSOLIDATED, CONSOLIDATION_FAILED, RUNNING, SUPERSEDED

B = "20300101_abcdefabcdef"
WHOLE = Shape(len(EXPECTED_PAIRS), len(EXPECTED_PAIRS), EXPECTED_PAIRS)


# -- item shape -----------------------------------------------------------------------------------
def test_the_expected_shape_is_one_row_per_configured_system_and_prop():
    assert len(EXPECTED_PAIRS) == len(PREDICTION_SYSTEMS) * len(PREDICTION_PROPS)
    assert shape_problem(WHOLE) is None


@pytest.mark.parametrize(("shape", "says"), [
    (Shape(3, 3, frozenset(sorted(EXPECTED_PAIRS)[:3])), "lacks 2 of its 5"),
    (Shape(6, 6, EXPECTED_PAIRS | {"other/points"}), "no configured system x prop"),
    (Shape(6, 5, EXPECTED_PAIRS), "repeats a prediction id"),
    (Shape(6, 6, EXPECTED_PAIRS), "holds 6 rows for 5"),  # two prediction ids for one system x prop
    (Shape(0, 0, frozenset()), "lacks 5 of its 5"),
])
def test_every_other_shape_is_named_with_what_is_wrong(shape, says):
    assert says in (shape_problem(shape) or "")


def test_the_worker_judges_its_rows_by_the_same_function():
    rows = [{"prediction_id": p, "system_id": p.split("/")[0], "prop_type": p.split("/")[1]}
            for p in sorted(EXPECTED_PAIRS)]
    assert rows_problem(rows) is None
    assert "lacks 1 of its 5" in rows_problem(rows[1:])
    twice = [*rows[:-1], {**rows[-1], "prediction_id": rows[0]["prediction_id"]}]
    assert "repeats a prediction id" in rows_problem(twice)


# -- MERGE job ids and this batch's MERGEs --------------------------------------------------------
@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_a_merge_job_id_round_trips(g, a):
    assert parse_merge_job_id(merge_job_id(B, g, a)) == (B, g, a)
    assert merge_job_id(B, g, a).startswith(acc.merge_job_prefix(B))


@pytest.mark.parametrize("job_id", ["bquxjob_1", f"batchline_merge_{B}_g1", f"batchline_merge_{B}_g1_a2_x",
                                    f"batchline_merge_{B.upper()}_g1_a2", f"xbatchline_merge_{B}_g1_a2"])
def test_other_job_ids_are_not_merges(job_id):
    assert parse_merge_job_id(job_id) is None


PIN = "g0_a0_" + "0" * 12


def _consolidated(**extra) -> dict:
    return {"batch_id": B, "game_date": "2030-01-01", "status": CONSOLIDATED, "consolidation_generation": 0,
            "merge_result": {"job_id": merge_job_id(B, 0, 0), "pin": PIN, "verified_items": 3}, **extra}


def test_a_batch_merge_and_its_orphan_merges_are_all_this_batchs_merges():
    orphan = merge_job_id(B, acc.ORPHAN_GENERATION_BASE, 0)
    batch = _consolidated(orphan_generation=acc.ORPHAN_GENERATION_BASE, orphans_merged=[{"job_id": orphan}])
    assert merge_problems(batch, [merge_job_id(B, 0, 0), orphan]) == [], "the issue's '2 MERGE jobs for 1' case"
    assert merge_problems(_consolidated(), [merge_job_id(B, 0, 0), merge_job_id("20300101_000000000000", 0, 0)]) == []


def test_merge_problems_name_each_kind_of_wrong():
    g0a0, g0a1 = merge_job_id(B, 0, 0), merge_job_id(B, 0, 1)
    assert "2 successful MERGE jobs of generation 0" in merge_problems(_consolidated(), [g0a0, g0a1])[0]
    assert "generations [1]" in merge_problems(_consolidated(), [g0a0, merge_job_id(B, 1, 0)])[0]
    assert "not among its successful jobs" in merge_problems(_consolidated(), [])[0]
    orphan = merge_job_id(B, acc.ORPHAN_GENERATION_BASE, 0)
    unrecorded = merge_problems(_consolidated(orphan_generation=acc.ORPHAN_GENERATION_BASE), [g0a0, orphan])
    assert unrecorded == [f"orphan MERGE jobs not recorded as verified: {orphan}"]
    assert "generations [1000]" in merge_problems(_consolidated(), [g0a0, orphan])[0], "no orphan generation known"
    # a re-opened batch: one MERGE per generation it knows (the first may have merged 0 rows and failed)
    reopened = _consolidated(consolidation_generation=1, merge_result={"job_id": merge_job_id(B, 1, 0), "pin": PIN,
                                                                        "verified_items": 1})
    assert merge_problems(reopened, [g0a0, merge_job_id(B, 1, 0)]) == []


# -- a table kept on purpose ----------------------------------------------------------------------
@pytest.mark.parametrize(("batch", "kept"), [
    ({"status": CONSOLIDATED, "staging_table_dropped": False}, "staging_kept_late_rows"),
    ({"status": CONSOLIDATED, "staging_table_dropped": True}, None),
    ({"status": CONSOLIDATED}, None),
    ({"status": CONSOLIDATION_FAILED}, "failed consolidation"),
    ({"status": SUPERSEDED}, "daily reconciliation"),
    ({"status": RUNNING}, "still running"),
])
def test_a_table_is_kept_on_purpose_or_left(batch, kept):
    reason = acc.kept_table_reason(batch)
    assert (reason is None) == (kept is None) and (kept is None or kept in reason)
    assert (acc.staging_problem(batch, True) is None) == (kept is not None)
    assert acc.staging_problem(batch, False) is None


# -- the judgement --------------------------------------------------------------------------------
def _facts(**kw) -> BatchFacts:
    base = dict(batch=_consolidated(), items={f"p{i}": {"item_id": f"p{i}", "status": "completed"} for i in range(3)},
                schedule={"p0", "p1", "p2"}, own_rows={f"p{i}": WHOLE for i in range(3)}, other_batches={},
                active_from={}, dead_lettered=set(), duplicate_ids=0, duplicate_active=0,
                staging_table_exists=False, merge_jobs=[merge_job_id(B, 0, 0)], merged_by_batch={"p0", "p1", "p2"})
    return BatchFacts(**{**base, **kw})


def test_a_complete_batch_has_no_problem():
    j = judge(_facts())
    assert j.problems == [] and j.parts["merged"] == ["p0", "p1", "p2"]


def test_short_rows_and_a_failed_short_write_are_incomplete_never_merged():
    short = Shape(3, 3, frozenset(sorted(EXPECTED_PAIRS)[:3]))
    items = {**_facts().items, "p2": {"item_id": "p2", "status": "failed", "failure_reason": "incomplete write: x"}}
    j = judge(_facts(own_rows={"p0": WHOLE, "p1": short}, items=items, dead_lettered={"p1", "p2"}))
    assert j.parts["merged"] == ["p0"] and j.parts["incomplete"] == ["p1", "p2"] and j.parts["recovered"] == []
    assert "lacks 2 of its 5" in j.incomplete["p1"] and j.incomplete["p2"] == "incomplete write: x"
    assert any(p.startswith("2 items with incomplete rows") for p in j.problems)


def test_rows_a_later_run_updated_still_count_for_the_batch_that_merged_them():
    j = judge(_facts(own_rows={"p0": WHOLE, "p1": WHOLE, "p2": Shape(1, 1, frozenset({"x/points"}))},
                     other_batches={"p2": {"20300101_000000000009": 4}}))
    assert j.parts["merged"] == ["p0", "p1", "p2"] and j.overwritten == {"p2": ["20300101_000000000009"]}
    unmerged = judge(_facts(merged_by_batch={"p0"},
                            own_rows={"p0": WHOLE, "p2": Shape(1, 1, frozenset({"x/points"}))},
                            other_batches={"p2": {"20300101_000000000009": 4}}))
    assert unmerged.parts["incomplete"] == ["p2"], "only rows the batch's own verified MERGE merged"


def test_a_scheduled_player_without_an_item_is_missing_and_a_kept_table_is_no_problem():
    j = judge(_facts(schedule={"p0", "p1", "p2", "p3"}, staging_table_exists=True,
                     batch=_consolidated(staging_table_dropped=False)))
    assert j.parts["missing"] == ["p3"] and j.problems == ["1 expected items neither merged nor dead-lettered"]
    assert "staging_kept_late_rows" in j.kept_table_reason


def test_the_worker_refuses_a_short_predictor_output_before_writing_it():
    import datetime as dt

    from batchline.domain.errors import InvalidRows
    from batchline.domain.messages import WorkMessage
    from batchline.domain.predictor import SyntheticPredictor
    from batchline.flows.work import build_rows, check_rows

    msg = WorkMessage(batch_id=B, game_date=dt.date(2030, 1, 1), item_id="p1", game_id="g1")
    rows = build_rows(msg, SyntheticPredictor(), dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    check_rows(rows)  # the stock predictor's shape is the expected one

    class Short:
        def predict(self, ctx):
            return SyntheticPredictor().predict(ctx)[:3]

    with pytest.raises(InvalidRows, match="lacks 2 of its 5"):
        check_rows(build_rows(msg, Short(), dt.datetime(2030, 1, 1, tzinfo=dt.UTC)))


def test_the_pins_of_a_batchs_own_merges_are_its_consolidations_and_its_orphan_merges():
    orphan_pin = "g1000_a0_" + "1" * 12
    batch = _consolidated(orphans_merged=[{"job_id": "j", "pin": orphan_pin}, {"job_id": "legacy"}])
    assert acc.merged_pins(batch) == sorted([PIN, orphan_pin])
    assert acc.merged_pins({**batch, "status": CONSOLIDATION_FAILED}) == [orphan_pin], \
        "a consolidation that failed merged nothing of its own"
