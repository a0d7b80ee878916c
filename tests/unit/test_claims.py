"""The bulk verification of completion claims (batchline/domain/claims.py) and the item transition that applies
its verdicts (lifecycle.decide_claim_rejected): pure, in microseconds."""

from __future__ import annotations

import datetime as dt

import pytest

from batchline.domain import claims, lifecycle
from batchline.domain.evidence import StagedWrite
from batchline.domain.item_shape import EXPECTED_PAIRS, EXPECTED_ROWS

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
W = {k: k * 32 for k in "abcdef"}


def write(item: str, w: str, rows: int = EXPECTED_ROWS, keys: int | None = None, pairs=EXPECTED_PAIRS) -> StagedWrite:
    return StagedWrite(item, W[w], rows, rows if keys is None else keys, frozenset(pairs))


def claim(item: str, w: str, rows: int = EXPECTED_ROWS, **extra) -> dict:
    return {"item_id": item, "status": "completed", "write_id": W[w], "row_count": rows, **extra}


def staged(*writes: StagedWrite) -> dict:
    out: dict = {}
    for x in writes:
        out.setdefault(x.item_id, {})[x.write_id] = x
    return out


def test_true_claims_are_not_rejected_and_items_without_a_claim_are_not_judged():
    items = [claim("p1", "a"), claim("p2", "b"), {"item_id": "p3", "status": "pending"},
             {"item_id": "p4", "status": "failed", "write_id": None}]
    assert claims.judge(items, staged(write("p1", "a"), write("p2", "b"), write("p3", "c"))) == []


@pytest.mark.parametrize(("item", "writes", "reason"), [
    (claim("p1", "a"), [], "which the batch staging table does not hold"),
    (claim("p1", "b"), [write("p2", "b")], "which holds the rows of item p2"),
    (claim("p1", "a", rows=EXPECTED_ROWS + 2), [write("p1", "a")], f"claims {EXPECTED_ROWS + 2} rows"),
    (claim("p1", "a", rows=3), [write("p1", "a", rows=3, pairs=sorted(EXPECTED_PAIRS)[:3])], "lacks 2 of its"),
    (claim("p1", "a"), [write("p1", "a", keys=EXPECTED_ROWS - 1)], "repeats a prediction id"),
])
def test_a_false_claim_is_rejected_with_its_reason_and_sent_back(item, writes, reason):
    (r,) = claims.judge([item], staged(*writes))
    assert (r.item_id, r.write_id, r.action) == ("p1", item["write_id"], claims.REDISPATCH)
    assert reason in r.reason


def test_a_false_claim_of_an_item_with_another_complete_write_switches_to_it():
    """The claim named a write that is short, but a redelivered attempt staged the item whole."""
    short = write("p1", "a", rows=3, pairs=sorted(EXPECTED_PAIRS)[:3])
    (r,) = claims.judge([claim("p1", "a", rows=3)], staged(short, write("p1", "b"), write("p1", "c", rows=4)))
    assert r.action == claims.SWITCH and r.switch_to == write("p1", "b")


def test_claims_rejected_max_times_fail_the_item_instead_of_looping():
    before = [{"write_id": W["e"], "reason": "x"}] * (claims.MAX_REJECTED_CLAIMS - 1)
    (r,) = claims.judge([claim("p1", "a", rejected_claims=before)], staged())
    assert r.action == claims.FAIL
    assert "never verified (3 rejected" in claims.failure_reason(r, len(before), "20300101_0123456789ab")
    (again,) = claims.judge([claim("p1", "a", rejected_claims=before[:-1])], staged())
    assert again.action == claims.REDISPATCH


def test_a_redispatch_returns_the_item_to_pending_and_keeps_the_rejected_claim():
    result, update = lifecycle.decide_claim_rejected(claim("p1", "a"), claimed_write=W["a"], action="redispatch",
                                                     reason="names write aaa...", now=NOW)
    assert result == "redispatch"
    assert update["status"] == "pending" and update["write_id"] is None and update["updated_at"] == NOW
    assert update["rejected_claims"] == [{"write_id": W["a"], "row_count": EXPECTED_ROWS,
                                          "reason": "names write aaa...", "at": NOW}]


def test_a_switch_moves_the_claim_and_a_fail_is_terminal_with_the_reason():
    _, switched = lifecycle.decide_claim_rejected(claim("p1", "a"), claimed_write=W["a"], action="switch",
                                                  reason="r", now=NOW, switch_to=(W["b"], EXPECTED_ROWS))
    assert (switched["write_id"], switched["row_count"]) == (W["b"], EXPECTED_ROWS) and "status" not in switched
    _, failed = lifecycle.decide_claim_rejected(claim("p1", "a", rejected_claims=[{"w": 1}]), claimed_write=W["a"],
                                                action="fail", reason="r", now=NOW, failure_reason="why")
    assert failed["status"] == "failed" and failed["failure_reason"] == "why" and len(failed["rejected_claims"]) == 2


@pytest.mark.parametrize("item", [
    claim("p1", "b"),  # a newer completion moved the claim on
    {"item_id": "p1", "status": "pending", "write_id": None},  # another verifier sent it back already
    {"item_id": "p1", "status": "failed", "write_id": W["a"]},
])
def test_a_verdict_applies_only_to_the_claim_it_judged(item):
    assert lifecycle.decide_claim_rejected(item, claimed_write=W["a"], action="redispatch", reason="r",
                                           now=NOW) == ("stale", None)


def test_an_unknown_verdict_is_refused():
    with pytest.raises(ValueError):
        lifecycle.decide_claim_rejected(claim("p1", "a"), claimed_write=W["a"], action="merge", reason="r", now=NOW)
