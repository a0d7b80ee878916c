"""The lifecycle decisions, without Firestore: every guard in microseconds, and a hypothesis state
machine of the consolidation protocol (deliveries, leases, MERGE attempts, crashes, time) whose
invariant is the promise of F2: never two successful MERGEs of one batch generation."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from batchline.domain import lifecycle as lc
from batchline.domain.runs import MERGING_ORPHANS, conflict_advice, repair_blocked
from batchline.domain.statuses import (
    COMPLETED,
    CONSOLIDATED,
    CONSOLIDATING,
    CONSOLIDATION_FAILED,
    CONSOLIDATION_REQUESTED,
    DISPATCH_FAILED,
    DISPATCHING,
    FAILED,
    OPEN_STATUSES,
    PENDING,
    PERMANENT,
    RUNNING,
    SUPERSEDED,
    TERMINAL_STATUSES,
    TRANSIENT,
)

T0 = dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC)


def _batch(status: str, **extra) -> dict:
    return {"batch_id": "20300101_abcdefabcdef", "game_date": "2030-01-01", "status": status, **extra}


def _apply(batch: dict, decision) -> tuple[object, dict]:
    result, update = decision
    return result, {**batch, **(update or {})}


# -- the claim ------------------------------------------------------------------------------------
def test_a_claim_is_won_once_and_an_unpublished_claim_is_taken_over_after_the_grace():
    won, batch = _apply(_batch(RUNNING), lc.decide_claim(_batch(RUNNING), "r", "m1", T0))
    assert won and batch["status"] == CONSOLIDATION_REQUESTED
    assert lc.decide_claim(batch, "r", "m1", T0 + dt.timedelta(seconds=5)) == (True, None), "its own redelivery"
    assert lc.decide_claim(batch, "r", "m2", T0 + dt.timedelta(seconds=5)) == (False, None), "within the grace"
    late = T0 + lc.CLAIM_GRACE
    taken, update = lc.decide_claim(batch, "r", "m2", late)
    assert taken and update["consolidation_claimant"] == "m2" and update["consolidation_requested_at"] == late
    published = {**batch, "consolidation_message_id": "x"}
    assert lc.decide_claim(published, "r", "m2", late + dt.timedelta(hours=1), take_over=True) == (False, None)


# -- the lease ------------------------------------------------------------------------------------
def test_two_deliveries_of_one_message_are_two_contenders():
    (verdict, _), batch = _apply(_batch(CONSOLIDATION_REQUESTED), lc.decide_lease(
        _batch(CONSOLIDATION_REQUESTED), "delivery-1", T0))
    assert verdict == "run"
    (verdict, _), update = lc.decide_lease(batch, "delivery-2", T0 + dt.timedelta(seconds=1))
    assert verdict == "busy" and update is None
    (verdict, _), update = lc.decide_lease(batch, "delivery-2", T0 + lc.LEASE_TTL)
    assert verdict == "run" and update["lease_token"] == "delivery-2", "an expired lease is taken over"


def test_a_released_lease_lets_the_next_delivery_in_at_once_and_only_the_holder_renews_or_releases():
    batch = _batch(CONSOLIDATING, lease_token="a", lease_expires_at=T0 + lc.LEASE_TTL)
    assert lc.decide_renew(batch, "b", T0) == (False, None)
    assert lc.decide_release(batch, "b") == (False, None)
    assert lc.decide_renew(batch, "a", T0)[1] == {"lease_expires_at": T0 + lc.LEASE_TTL}
    _, released = _apply(batch, lc.decide_release(batch, "a"))
    assert lc.decide_lease(released, "b", T0)[0][0] == "run"


@pytest.mark.parametrize("status", TERMINAL_STATUSES)
def test_a_terminal_batch_is_done_for_every_delivery(status):
    assert lc.decide_lease(_batch(status), "x", T0) == (("done", _batch(status)), None)


@pytest.mark.parametrize("status", OPEN_STATUSES)
def test_an_unclaimed_batch_is_not_consolidated(status):
    assert lc.decide_lease(_batch(status), "x", T0)[0][0] == "busy"


# -- MERGE attempts -------------------------------------------------------------------------------
def test_only_the_holder_moves_on_and_only_from_the_attempt_it_saw_fail():
    batch = _batch(CONSOLIDATING, lease_token="a", merge_attempt=1)
    assert lc.decide_next_merge_attempt(batch, "b", 1) == (False, None)
    assert lc.decide_next_merge_attempt(batch, "a", 0) == (False, None), "a stale failure moves nothing"
    assert lc.decide_next_merge_attempt(batch, "a", 1) == (True, {"merge_attempt": 2})


# -- re-opening a failed consolidation ------------------------------------------------------------
def test_a_failed_batch_is_reopened_only_while_it_is_the_dates_newest_run():
    failed = _batch(CONSOLIDATION_FAILED, failure_kind=TRANSIENT, consolidation_generation=2)
    why, update = lc.decide_reopen(failed, "20300101_000000000001", "op", T0, auto=False)
    assert update is None and "newer run" in why
    result, update = lc.decide_reopen(failed, failed["batch_id"], "op", T0, auto=False)
    assert result == "reopened" and update["status"] == CONSOLIDATION_REQUESTED
    assert update["consolidation_generation"] == 3 and update["merge_attempt"] == 0


def test_the_stall_check_reopens_transient_failures_a_bounded_number_of_times():
    own = "20300101_abcdefabcdef"
    permanent = _batch(CONSOLIDATION_FAILED, failure_kind=PERMANENT)
    assert lc.decide_reopen(permanent, own, "s", T0, auto=True)[1] is None
    assert lc.decide_reopen(permanent, own, "s", T0, auto=False)[1] is not None, "a person may"
    spent = _batch(CONSOLIDATION_FAILED, failure_kind=TRANSIENT, auto_reopens=lc.MAX_AUTO_REOPENS)
    assert lc.decide_reopen(spent, own, "s", T0, auto=True)[1] is None
    fresh = _batch(CONSOLIDATION_FAILED, failure_kind=TRANSIENT)
    assert lc.decide_reopen(fresh, own, "s", T0, auto=True)[1]["auto_reopens"] == 1


# -- dispatch -------------------------------------------------------------------------------------
def test_a_dispatch_is_resumed_only_once_its_lease_lapsed():
    batch = _batch(DISPATCHING, dispatch_token="start", dispatch_lease_until=T0 + lc.DISPATCH_LEASE)
    assert lc.decide_dispatch_lease(batch, "retry", T0) == (False, None)
    assert lc.decide_dispatch_lease(batch, "start", T0)[0], "its holder renews"
    ok, update = lc.decide_dispatch_lease(batch, "retry", T0 + lc.DISPATCH_LEASE)
    assert ok and update["dispatch_token"] == "retry"
    assert lc.decide_mark_running(batch, "retry", T0) == (False, None), "only the holder marks it running"
    assert lc.decide_mark_running(batch, "start", T0)[1]["status"] == RUNNING
    assert lc.decide_dispatch_lease(_batch(RUNNING), "x", T0) == (False, None)


# -- items ----------------------------------------------------------------------------------------
def test_a_failure_never_overrides_a_completion_and_a_completion_overrides_a_failure():
    assert lc.decide_failure({"status": COMPLETED}, "x", T0) == ("already_completed", None)
    result, update = lc.decide_completion({"status": FAILED}, late=False, staging_table="t", row_count=5,
                                          attempt=3, now=T0)
    assert result == "recorded" and update["status"] == COMPLETED and update["previous_status"] == FAILED
    assert lc.decide_failure({"status": PENDING}, "dl", T0, dead_lettered=True)[1]["dead_lettered_at"] == T0


def test_only_a_redelivery_of_the_recorded_completion_skips_the_write_check():
    done = {"status": COMPLETED, "write_id": "w1", "row_count": 5}
    assert lc.completion_is_recorded(done, "w1", 5)
    assert not lc.completion_is_recorded(done, "w2", 5), "another write (another item's, another attempt's)"
    assert not lc.completion_is_recorded(done, "w1", 3), "the recorded write with another count"
    assert not lc.completion_is_recorded({**done, "status": FAILED}, "w1", 5)
    assert not lc.completion_is_recorded({"status": PENDING, "write_id": None, "row_count": None}, "w1", 5)


# -- the protocol as a state machine --------------------------------------------------------------
class ConsolidationProtocol(RuleBasedStateMachine):
    """Deliveries arrive and take the lease or not; a holder believes it holds the lease until the
    expiry it last wrote, starts the MERGE job of the current attempt (or waits for it, as
    run_merge_once does), sees an attempt fail (perhaps a stale one), renews, releases or crashes;
    time passes. Jobs are keyed by attempt, as job ids are."""

    def __init__(self):
        super().__init__()
        self.batch = _batch(CONSOLIDATION_REQUESTED)
        self.now = T0
        self.believes: dict[str, dt.datetime] = {}  # holder -> the lease expiry it last wrote
        self.jobs: dict[int, str] = {}  # attempt -> running | failed | succeeded
        self.n = 0

    @rule()
    def deliver(self):
        self.n += 1
        token = f"d{self.n}"
        (verdict, _), self.batch = _apply(self.batch, lc.decide_lease(self.batch, token, self.now))
        if verdict == "run":
            self.believes[token] = self.batch["lease_expires_at"]

    @precondition(lambda self: self.believes)
    @rule(data=st.data())
    def run_merge(self, data):
        data.draw(st.sampled_from(sorted(self.believes)))
        self.jobs.setdefault(int(self.batch.get("merge_attempt") or 0), "running")

    @precondition(lambda self: any(s == "running" for s in self.jobs.values()))
    @rule(ok=st.booleans(), data=st.data())
    def job_finishes(self, ok, data):
        attempt = data.draw(st.sampled_from([a for a, s in self.jobs.items() if s == "running"]))
        self.jobs[attempt] = "succeeded" if ok else "failed"

    @precondition(lambda self: self.believes and any(s == "failed" for s in self.jobs.values()))
    @rule(data=st.data())
    def holder_sees_an_attempt_fail(self, data):
        token = data.draw(st.sampled_from(sorted(self.believes)))
        attempt = data.draw(st.sampled_from([a for a, s in self.jobs.items() if s == "failed"]))
        _, self.batch = _apply(self.batch, lc.decide_next_merge_attempt(self.batch, token, attempt))
        released, self.batch = _apply(self.batch, lc.decide_release(self.batch, token))
        self.believes.pop(token, None)

    @precondition(lambda self: self.believes)
    @rule(data=st.data())
    def holder_renews_or_crashes(self, data):
        token = data.draw(st.sampled_from(sorted(self.believes)))
        if data.draw(st.booleans()):
            renewed, self.batch = _apply(self.batch, lc.decide_renew(self.batch, token, self.now))
            if renewed:
                self.believes[token] = self.batch["lease_expires_at"]
            else:
                self.believes.pop(token)
        else:
            self.believes.pop(token)

    @rule(seconds=st.integers(min_value=1, max_value=200))
    def time_passes(self, seconds):
        self.now += dt.timedelta(seconds=seconds)

    @invariant()
    def never_two_successful_merges(self):
        assert sum(s == "succeeded" for s in self.jobs.values()) <= 1

    @invariant()
    def a_new_attempt_only_after_a_failed_one(self):
        for attempt in self.jobs:
            assert all(self.jobs.get(prior) == "failed" for prior in range(attempt))

    @invariant()
    def at_most_one_delivery_believes_it_holds_the_lease(self):
        assert sum(expiry > self.now for expiry in self.believes.values()) <= 1


TestConsolidationProtocol = ConsolidationProtocol.TestCase
TestConsolidationProtocol.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


# -- exact decisions: the fields written are the contract with Firestore and every reader ----------
def test_every_claim_writes_the_whole_claim_and_take_over_ignores_the_grace():
    claim = {"status": CONSOLIDATION_REQUESTED, "consolidation_reason": "stalled",
             "consolidation_claimant": "stall-check", "consolidation_requested_at": T0}
    assert lc.decide_claim(_batch(DISPATCHING), "stalled", "stall-check", T0) == (True, claim)
    fresh = _batch(CONSOLIDATION_REQUESTED, consolidation_claimant="m1", consolidation_requested_at=T0)
    assert lc.decide_claim(fresh, "stalled", "stall-check", T0, take_over=True) == (True, claim)
    unknown_time = _batch(CONSOLIDATION_REQUESTED, consolidation_claimant="m1")
    assert lc.decide_claim(unknown_time, "stalled", "stall-check", T0) == (True, claim)
    assert lc.decide_claim(_batch(CONSOLIDATING), "r", "m1", T0) == (False, None)


def test_exact_lease_renewal_release_and_take():
    held = _batch(CONSOLIDATING, lease_token="a", lease_expires_at=T0)
    assert lc.decide_renew(held, "a", T0) == (True, {"lease_expires_at": T0 + lc.LEASE_TTL})
    assert lc.decide_renew(_batch(CONSOLIDATED, lease_token="a"), "a", T0) == (False, None)
    assert lc.decide_release(held, "a") == (True, {"lease_token": None, "lease_expires_at": None})
    assert lc.decide_release(_batch(CONSOLIDATED, lease_token="a"), "a") == (False, None)
    requested = _batch(CONSOLIDATION_REQUESTED)
    update = {"status": CONSOLIDATING, "lease_token": "t", "lease_expires_at": T0 + lc.LEASE_TTL}
    assert lc.decide_lease(requested, "t", T0) == (("run", {**requested, **update}), update)
    same_holder = _batch(CONSOLIDATING, lease_token="t", lease_expires_at=T0 + lc.LEASE_TTL)
    assert lc.decide_lease(same_holder, "t", T0)[0][0] == "run", "a holder may take its own lease again"


def test_exact_reopen_decisions():
    own = "20300101_abcdefabcdef"
    assert lc.decide_reopen(_batch(CONSOLIDATED), own, "op", T0, auto=False) == (
        "batch is consolidated, not consolidation_failed", None)
    failed = _batch(CONSOLIDATION_FAILED, failure_kind=TRANSIENT, auto_reopens=1)
    newer = "20300101_000000000001"
    why, update = lc.decide_reopen(failed, newer, "op", T0, auto=False)
    assert update is None and why == (
        f"a newer run of 2030-01-01 ({newer}) replaced this batch; re-consolidating it would overwrite newer "
        f"rows. The reconciliation finishes its kept rows per item (`batchline reconcile 2030-01-01`)")
    assert lc.decide_reopen(_batch(CONSOLIDATION_FAILED, failure_kind=PERMANENT), own, "s", T0, auto=True) == (
        "not re-opened automatically (permanent failure, 0 re-opens)", None)
    assert lc.decide_reopen(failed, own, "s", T0, auto=True) == ("reopened", {
        "status": CONSOLIDATION_REQUESTED, "consolidation_claimant": "s", "consolidation_requested_at": T0,
        "consolidation_message_id": None, "consolidation_reason": "auto_reopen", "lease_token": None,
        "lease_expires_at": None, "error": None, "failure_kind": None, "merge_attempt": 0,
        "consolidation_generation": 1, "auto_reopens": 2})
    result, update = lc.decide_reopen(failed, own, "op", T0, auto=False)
    assert result == "reopened" and update["consolidation_reason"] == "manual" and "auto_reopens" not in update


def test_exact_merge_attempt_and_dispatch_decisions():
    fresh = _batch(CONSOLIDATING, lease_token="a")  # no merge_attempt yet: attempt 0
    assert lc.decide_next_merge_attempt(fresh, "a", 0) == (True, {"merge_attempt": 1})
    assert lc.decide_next_merge_attempt(_batch(CONSOLIDATED, lease_token="a"), "a", 0) == (False, None)
    unheld = _batch(DISPATCHING)
    assert lc.decide_dispatch_lease(unheld, "s", T0) == (
        True, {"dispatch_token": "s", "dispatch_lease_until": T0 + lc.DISPATCH_LEASE})
    held = _batch(DISPATCHING, dispatch_token="s")
    assert lc.decide_mark_running(held, "s", T0) == (
        True, {"status": RUNNING, "dispatched_at": T0, "dispatch_token": None, "dispatch_lease_until": None})
    assert lc.decide_mark_running(_batch(CONSOLIDATION_REQUESTED, dispatch_token="s"), "s", T0) == (False, None)


def test_exact_transition_decisions():
    fields = {"status": CONSOLIDATED}
    assert lc.decide_transition(_batch(CONSOLIDATING), [CONSOLIDATING], fields) == (True, fields)
    assert lc.decide_transition(_batch(RUNNING), [CONSOLIDATING], fields) == (False, None)
    leased = _batch(CONSOLIDATING, lease_token="a")
    assert lc.decide_transition(leased, [CONSOLIDATING], fields, "a") == (True, fields)
    assert lc.decide_transition(leased, [CONSOLIDATING], fields, "b") == (False, None)


WRITE = "0123456789abcdef0123456789abcdef"


def test_exact_item_decisions():
    assert lc.decide_completion({"status": COMPLETED}, late=False, staging_table="t", row_count=5, attempt=1,
                                now=T0) == ("duplicate", None)
    assert lc.decide_completion({"status": PENDING}, late=True, staging_table="t", row_count=5, attempt=2,
                                now=T0, write_id=WRITE) == ("late", {
        "status": COMPLETED, "staging_table": "t", "write_id": WRITE, "row_count": 5, "attempt": 2,
        "previous_status": PENDING, "late": True, "updated_at": T0})
    assert lc.decide_failure({"status": FAILED}, "x", T0) == ("duplicate", None)
    assert lc.decide_failure({"status": PENDING}, "why", T0) == (
        "recorded", {"status": FAILED, "failure_reason": "why", "updated_at": T0})
    assert lc.decide_failure({"status": PENDING}, "why", T0, dead_lettered=True) == (
        "recorded", {"status": FAILED, "failure_reason": "why", "updated_at": T0, "dead_lettered_at": T0})


# -- found by review: a dead letter, a slow dispatcher and a redelivered operator request --------
def test_a_consolidation_dead_letter_fails_only_a_batch_nobody_is_consolidating():
    live = _batch(CONSOLIDATING, lease_token="m2", lease_expires_at=T0 + lc.LEASE_TTL)
    assert lc.decide_consolidation_dead_letter(live, T0, "dl") == (False, None), "a live holder is left alone"
    lapsed = {**live, "lease_expires_at": T0}
    failed = {"status": CONSOLIDATION_FAILED, "failure_kind": TRANSIENT, "error": "dl", "lease_token": None,
              "lease_expires_at": None}
    assert lc.decide_consolidation_dead_letter(lapsed, T0, "dl") == (True, failed)
    assert lc.decide_consolidation_dead_letter(_batch(CONSOLIDATING), T0, "dl") == (True, failed), "released"
    assert lc.decide_consolidation_dead_letter(_batch(CONSOLIDATION_REQUESTED), T0, "dl") == (True, failed)
    for status in (*TERMINAL_STATUSES, *OPEN_STATUSES):
        assert lc.decide_consolidation_dead_letter(_batch(status), T0, "dl") == (False, None), status


def test_only_the_dispatcher_holding_the_lease_fails_the_batch():
    batch = _batch(DISPATCHING, dispatch_token="resumer")
    assert lc.decide_dispatch_failed(batch, "slow-starter", "timeout") == (False, None)
    assert lc.decide_dispatch_failed(batch, "resumer", "x" * 3000) == (
        True, {"status": DISPATCH_FAILED, "error": "x" * 2000, "dispatch_token": None})
    assert lc.decide_dispatch_failed(_batch(RUNNING, dispatch_token="resumer"), "resumer", "e") == (False, None)


def test_a_redelivered_operator_request_does_not_reopen_the_batch_again():
    own = "20300101_abcdefabcdef"
    by_message = _batch(CONSOLIDATION_FAILED, failure_kind=PERMANENT, consolidation_claimant="op-msg")
    assert lc.decide_reopen(by_message, own, "op-msg", T0, auto=False) == (
        "this request already re-opened the batch once", None)
    published = _batch(CONSOLIDATION_FAILED, consolidation_claimant="control-req", consolidation_message_id="m7")
    assert lc.decide_reopen(published, own, "m7", T0, auto=False)[1] is None
    assert lc.decide_reopen(published, own, "m8", T0, auto=False)[0] == "reopened", "a new request re-opens it"


# -- starts and repairs: every refusal names what works ---------------------------------------------
def test_a_repair_waits_while_the_dates_newest_run_failed_consolidation_and_says_what_to_do_first():
    assert repair_blocked(None, None, "2030-01-01") is None
    for status in (CONSOLIDATED, SUPERSEDED, DISPATCH_FAILED, RUNNING):
        assert repair_blocked("b1", status, "2030-01-01") is None
    why = repair_blocked("b1", CONSOLIDATION_FAILED, "2030-01-01")
    assert "`batchline consolidate b1 --wait`" in why and "`batchline start 2030-01-01 --wait`" in why


@pytest.mark.parametrize(("status", "repair", "says", "never"), [
    (RUNNING, False, "use force", None),
    (DISPATCHING, True, "repair once it ended", "force"),  # a repair has no force
    (CONSOLIDATING, False, "once its consolidation ended", "force"),  # a forced start waits too
    (CONSOLIDATION_REQUESTED, True, "once its consolidation ended", "force"),
    (MERGING_ORPHANS, False, "start again in a minute", "force"),
])
def test_a_conflict_names_only_what_the_start_then_accepts(status, repair, says, never):
    advice = conflict_advice("b1", status, repair=repair)
    assert says in advice and (never is None or never not in advice)


def test_a_dispatch_held_by_a_starter_known_dead_is_taken_over_at_once():
    batch = _batch(DISPATCHING, dispatch_token="dead", dispatch_lease_until=T0 + lc.DISPATCH_LEASE)
    assert lc.decide_dispatch_lease(batch, "new", T0) == (False, None), "a live lease is not taken over"
    taken, update = lc.decide_dispatch_lease(batch, "new", T0, dead_holder="dead")
    assert taken and update["dispatch_token"] == "new"
    assert lc.decide_dispatch_lease(batch, "new", T0, dead_holder="someone-else") == (False, None)
