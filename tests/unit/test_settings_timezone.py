"""'Today' for a dateless scheduler call is taken in the schedule's time zone, not UTC."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from batchline.settings import ENV_TIMEZONE, SettingsError, from_env


def test_today_follows_the_configured_zone():
    for zone in ("America/New_York", "Asia/Tokyo", "UTC"):
        s = from_env({ENV_TIMEZONE: zone})
        assert s.timezone == zone
        assert s.today() == dt.datetime.now(ZoneInfo(zone)).date()
    assert from_env({}).timezone == "UTC"


@pytest.mark.parametrize("bad", ["Mars/Base", "../../etc/passwd", "EST5EDT;DROP"])
def test_unknown_zone_is_rejected_naming_the_variable(bad):
    with pytest.raises(SettingsError, match=ENV_TIMEZONE):
        from_env({ENV_TIMEZONE: bad})


def test_zone_round_trips_through_the_environment():
    s = from_env({ENV_TIMEZONE: "Europe/Paris"})
    assert from_env(s.as_env()) == s


def test_coverage_thresholds_are_validated_and_ordered():
    from batchline.settings import ENV_COVERAGE_CRITICAL_PCT, ENV_COVERAGE_WARNING_PCT
    s = from_env({ENV_COVERAGE_WARNING_PCT: "90", ENV_COVERAGE_CRITICAL_PCT: "70"})
    assert (s.coverage_warning_pct, s.coverage_critical_pct) == (90.0, 70.0)
    with pytest.raises(SettingsError, match=ENV_COVERAGE_CRITICAL_PCT):
        from_env({ENV_COVERAGE_WARNING_PCT: "80", ENV_COVERAGE_CRITICAL_PCT: "90"})
    with pytest.raises(SettingsError, match=ENV_COVERAGE_WARNING_PCT):
        from_env({ENV_COVERAGE_WARNING_PCT: "101"})
