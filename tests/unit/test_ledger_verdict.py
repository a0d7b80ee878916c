"""The ledger's verdict separates 'accounted for' (exit 0) from 'complete'."""

from __future__ import annotations

from batchline.flows.ledger import Ledger


def _ledger(**kw) -> Ledger:
    base = dict(batch_id="20300101_aaaaaaaaaaaa", game_date="2030-01-01", batch_status="consolidated",
                expected_items=40, merged_items=40, dead_lettered_items=0, missing_items=[], duplicate_rows=0,
                staging_tables_left=0, main_table_mutating_dml=1, merged_rows=200, elapsed_s=1.0,
                coverage_pct=100.0, coverage_warning_pct=95.0)
    return Ledger(**{**base, **kw})


def test_complete():
    x = _ledger()
    assert x.ok and x.complete and x.verdict == "OK: complete"


def test_dead_lettered_items_are_accounted_for_but_incomplete_and_name_the_replay():
    x = _ledger(merged_items=39, dead_lettered_items=1, dead_lettered_ids=["player_0003"], coverage_pct=97.5)
    assert x.ok and not x.complete
    assert x.verdict == ("ACCOUNTED FOR but INCOMPLETE: 1 dead-lettered "
                         "(replay with: batchline dlq replay --batch 20300101_aaaaaaaaaaaa)")


def test_coverage_below_the_warning_level_is_in_the_verdict():
    x = _ledger(merged_items=36, dead_lettered_items=4, coverage_pct=90.0)
    assert x.verdict.endswith("; coverage 90.0% below the 95% warning level")
    assert "coverage" not in _ledger(merged_items=39, dead_lettered_items=1, coverage_pct=97.5).verdict


def test_a_loss_is_not_ok():
    x = _ledger(merged_items=39, missing_items=["player_0001"], coverage_pct=97.5,
                problems=["1 expected items neither merged nor dead-lettered"])
    assert not x.ok and not x.complete and x.verdict.startswith("NOT OK: 1 expected items")
    d = x.as_dict()
    assert d["ok"] is False and d["complete"] is False and d["verdict"] == x.verdict


def test_the_replay_is_advised_only_when_it_would_run():
    blocked = "batch 20300101_bbbbbbbbbbbb, the newest run of 2030-01-01, failed consolidation ..."
    x = _ledger(merged_items=39, dead_lettered_items=1, coverage_pct=97.5, replay_blocked=blocked)
    assert x.ok and "replay with" not in x.verdict and f"replay refused for now: {blocked}" in x.verdict
