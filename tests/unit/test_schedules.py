"""The schedule contract (batchline/schedules.py) and the local scheduler's pure parts: when a job
fires (unix-cron in its time zone, DST included), how long it waits between retries (Google's
RetryConfig), what an attempt's answer means, and how local overrides apply."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchline.local import cron, schedule_config
from batchline.local.scheduler_runs import FAILED, REFUSED, SUCCEEDED, judge
from batchline.schedules import (
    JOB_TARGETS,
    Schedule,
    SchedulerRetry,
    SchedulesConfig,
    backoff_delays,
    render_jobs,
    scheduler_headers,
)
from batchline.topology import COORDINATOR, PATH_STALL_CHECK, PATH_START, RECONCILE

NY = ZoneInfo("America/New_York")
UTC = dt.UTC


def _ny(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NY)


def _fires(expr: str, after: dt.datetime, n: int, zone: str = "America/New_York") -> list[str]:
    return [t.astimezone(ZoneInfo(zone)).isoformat() for t in cron.fires(expr, zone, after, n)]


# -- cron in the job's time zone ------------------------------------------------------------------
def test_a_daily_cron_fires_at_the_zones_wall_clock_on_both_sides_of_dst():
    # 12:00 New York is 17:00Z in winter and 16:00Z in summer: the wall clock, not a fixed offset
    winter = cron.next_fire("0 12 * * *", "America/New_York", dt.datetime(2030, 1, 2, 0, 0, tzinfo=UTC))
    summer = cron.next_fire("0 12 * * *", "America/New_York", dt.datetime(2030, 7, 2, 0, 0, tzinfo=UTC))
    assert (winter.hour, summer.hour) == (17, 16) and winter.tzinfo == UTC


def test_a_wall_time_the_spring_change_skips_fires_once_at_the_end_of_the_gap():
    # 2027-03-14: New York jumps from 02:00 EST to 03:00 EDT
    assert _fires("30 2 * * *", _ny(2027, 3, 13, 12, 0), 3) == [
        "2027-03-14T03:00:00-04:00", "2027-03-15T02:30:00-04:00", "2027-03-16T02:30:00-04:00"]
    assert _fires("0 * * * *", _ny(2027, 3, 14, 0, 30), 3) == [
        "2027-03-14T01:00:00-05:00", "2027-03-14T03:00:00-04:00", "2027-03-14T04:00:00-04:00"]


def test_a_wall_time_the_autumn_change_repeats_fires_at_both_instants():
    # 2027-11-07: New York goes back from 02:00 EDT to 01:00 EST, so 01:30 happens twice
    assert _fires("30 1 * * *", _ny(2027, 11, 6, 12, 0), 3) == [
        "2027-11-07T01:30:00-04:00", "2027-11-07T01:30:00-05:00", "2027-11-08T01:30:00-05:00"]


def test_the_configured_stall_check_runs_every_minute_of_its_window_only():
    first = cron.fires("* 12-23 * * *", "America/New_York", _ny(2030, 1, 2, 23, 58), 3)
    assert [t.astimezone(NY).strftime("%d %H:%M") for t in first] == ["02 23:59", "03 12:00", "03 12:01"]


def test_day_of_month_and_day_of_week_are_ored_when_both_are_set():
    # Google's page: day of the month 1 and SAT runs on the 1st and on every Saturday; here the 3rd
    days = [t.astimezone(NY).strftime("%a %d") for t in cron.fires("0 9 3 * SAT", "America/New_York",
                                                                    _ny(2030, 5, 30), 3)]
    assert days == ["Sat 01", "Mon 03", "Sat 08"]


def test_due_runs_the_latest_missed_time_once_and_counts_the_others():
    next_at = dt.datetime(2030, 1, 2, 17, 0, tzinfo=UTC)
    assert cron.due("* * * * *", "UTC", next_at, next_at - dt.timedelta(seconds=1)) == (None, 0, next_at)
    when, missed, nxt = cron.due("* * * * *", "UTC", next_at, next_at + dt.timedelta(minutes=5, seconds=3))
    assert (when, missed, nxt) == (next_at + dt.timedelta(minutes=5), 5, next_at + dt.timedelta(minutes=6))
    assert cron.due("* * * * *", "UTC", next_at, next_at)[:2] == (next_at, 0)


def test_next_fire_refuses_a_naive_instant():
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.next_fire("* * * * *", "UTC", dt.datetime(2030, 1, 2))


@given(st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2035, 1, 1), timezones=st.just(UTC)),
       st.sampled_from(["* 12-23 * * *", "0 12 * * *", "30 4 * * *", "*/15 * * * MON-FRI", "30 1 * * *"]),
       st.sampled_from(["America/New_York", "Europe/London", "Australia/Adelaide", "UTC"]))
def test_next_fire_is_strictly_later_and_on_a_whole_minute(after, expr, zone):
    t = cron.next_fire(expr, zone, after)
    assert t > after and t.second == 0 and t.microsecond == 0 and t.tzinfo == UTC


# -- retries --------------------------------------------------------------------------------------
def test_backoff_follows_googles_documented_example():
    # RetryConfig: min 10 s, max 300 s, 3 doublings -> 10, 20, 40, 80, 160, 240, 300, 300 ...
    retry = SchedulerRetry(retry_count=5, min_backoff_s=10, max_backoff_s=300, max_doublings=3)
    assert backoff_delays(retry) == (10, 20, 40, 80, 160)
    assert backoff_delays(retry.model_copy(update={"max_doublings": 1})) == (10, 20, 40, 60, 80)
    assert backoff_delays(retry.model_copy(update={"max_backoff_s": 30})) == (10, 20, 30, 30, 30)


def test_the_stacks_retry_configs_give_these_waits():
    assert backoff_delays(SchedulerRetry(retry_count=1)) == (30,)  # dev: one retry after 30 s
    assert backoff_delays(SchedulerRetry(retry_count=3)) == (30, 60, 120)  # prod
    assert backoff_delays(SchedulerRetry(retry_count=0)) == ()


@given(st.integers(0, 5), st.integers(1, 3600), st.integers(1, 3600), st.integers(0, 16))
def test_backoff_is_within_bounds_and_never_shrinks(count, a, b, doublings):
    lo, hi = min(a, b), max(a, b)
    delays = backoff_delays(SchedulerRetry(retry_count=count, min_backoff_s=lo, max_backoff_s=hi,
                                           max_doublings=doublings))
    assert len(delays) == count and all(lo <= d <= hi for d in delays)
    assert list(delays) == sorted(delays)


@pytest.mark.parametrize(("status", "body", "outcome"), [
    (200, b'{"ok": true, "stalled": []}', SUCCEEDED),
    (204, b"", SUCCEEDED),
    (200, b'{"ok": false, "refused": true, "refused_status": 409, "error": "batch b still running"}', REFUSED),
    (409, b'{"ok": false, "error": "batch b still running"}', FAILED),  # from a target without the contract
    (500, b'{"ok": false, "error": "StallCheckErrors: 1 batches"}', FAILED),
    (503, b"<html>unavailable</html>", FAILED),
    (None, b"", FAILED),
])
def test_an_attempt_succeeds_only_on_a_2xx_and_a_refusal_is_told_apart(status, body, outcome):
    got, detail = judge(status, body, "ConnectionError: refused" if status is None else None)
    assert got == outcome and detail


# -- the contract -------------------------------------------------------------------------------
def _config(**stall_retry) -> SchedulesConfig:
    wide = SchedulerRetry(retry_count=1, attempt_deadline_s=930)
    return SchedulesConfig(
        start=Schedule(cron="0 12 * * *", time_zone="America/New_York", retry=wide),
        stall_check=Schedule(cron="* 12-23 * * *", time_zone="America/New_York",
                             retry=wide.model_copy(update=stall_retry)),
        reconcile=Schedule(cron="0 6 * * *", time_zone="UTC", retry=wide), retry=wide)


def test_render_names_targets_and_carries_each_jobs_own_schedule_and_retry():
    jobs = {j.key: j for j in render_jobs("batchline-dev", _config(retry_count=0))}
    assert list(jobs) == list(JOB_TARGETS) == ["start", "stall-check", "reconcile"]
    assert (jobs["start"].name, jobs["start"].function, jobs["start"].path) == (
        "batchline-dev-start", COORDINATOR, PATH_START)
    assert (jobs["stall-check"].function, jobs["stall-check"].path) == (COORDINATOR, PATH_STALL_CHECK)
    assert jobs["reconcile"].function == RECONCILE and jobs["reconcile"].time_zone == "UTC"
    assert jobs["stall-check"].retry.retry_count == 0 and jobs["start"].retry.retry_count == 1
    assert all(j.http_method == "POST" and j.body == "{}" and j.headers == {"Content-Type": "application/json"}
               for j in jobs.values())


def test_each_attempt_carries_what_cloud_scheduler_adds():
    job = render_jobs("batchline-dev", _config())[1]
    h = scheduler_headers(job, dt.datetime(2030, 1, 2, 12, 0, tzinfo=NY))
    assert h == {"Content-Type": "application/json", "User-Agent": "Google-Cloud-Scheduler",
                 "X-CloudScheduler": "true", "X-CloudScheduler-JobName": "batchline-dev-stall-check",
                 "X-CloudScheduler-ScheduleTime": "2030-01-02T17:00:00Z"}


# -- local overrides ----------------------------------------------------------------------------
def test_an_override_changes_only_its_jobs_cron_and_remembers_the_configured_one():
    s = schedule_config.load("dev", {"stall-check": "* * * * *", "batchline-dev-start": "off"})
    jobs = {j.job.key: j for j in s.jobs}
    assert jobs["stall-check"].job.cron == "* * * * *" and jobs["stall-check"].configured_cron == "* 12-23 * * *"
    assert jobs["start"].paused and jobs["start"].overridden and jobs["start"].job.cron == "0 12 * * *"
    assert not jobs["reconcile"].overridden and jobs["reconcile"].job.cron == "0 6 * * *"
    plain = {j.job.key: j.job for j in schedule_config.load("dev").jobs}
    assert jobs["stall-check"].job.retry == plain["stall-check"].retry, "an override changes the cron only"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"stall-check": "* * *"}, "has 3 fields"),
    ({"stall-check": "61 * * * *"}, "outside 0-59"),
    ({"stall-check": "0 0 L * *"}, "is not *"),
    ({"stal-check": "* * * * *"}, "no such job; the jobs are start, stall-check, reconcile"),
])
def test_a_bad_override_is_refused_with_the_reason(overrides, message):
    with pytest.raises(schedule_config.ScheduleConfigError, match=message):
        schedule_config.load("dev", overrides)


def test_overrides_come_from_options_and_a_file_and_options_win(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("stall-check: '*/5 * * * *'\nreconcile: 'off'\n")
    got = schedule_config.parse_overrides(["stall-check=* * * * *"], f)
    assert got == {"stall-check": "* * * * *", "reconcile": "off"}
    with pytest.raises(schedule_config.ScheduleConfigError, match="NAME=CRON"):
        schedule_config.parse_overrides(["stall-check"])
    f.write_text("- a list\n")
    with pytest.raises(schedule_config.ScheduleConfigError, match="must map job names"):
        schedule_config.parse_overrides([], f)


@pytest.mark.parametrize("stack", ["nope", "../dev", "dev/../prod", ""])
def test_an_unknown_or_odd_stack_name_is_refused(stack):
    with pytest.raises(schedule_config.ScheduleConfigError):
        schedule_config.load(stack)


def test_the_stacks_jobs_are_validated_as_pulumi_up_validates_them(tmp_path):
    good = (schedule_config.REPO_ROOT / "Pulumi.dev.yaml").read_text()
    (tmp_path / "Pulumi.bad.yaml").write_text(good.replace('cron: "0 6 * * *"', 'cron: "0 25 * * *"'))
    with pytest.raises(schedule_config.ScheduleConfigError, match="schedules.reconcile.cron .* outside 0-23"):
        schedule_config.load("bad", root=tmp_path)
