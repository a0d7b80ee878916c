"""Unit tests for batchline.domain.bounds: the one range check settings and fault specs share."""

from __future__ import annotations

import pytest

from batchline.domain.bounds import parse_bounded
from batchline.settings import SettingsError


@pytest.mark.parametrize(("raw", "kind", "expected"), [("0", int, 0), ("60", int, 60), ("0.0", float, 0.0),
                                                      ("1", float, 1.0), (" 0.5 ", float, 0.5)])
def test_bounds_are_inclusive(raw, kind, expected):
    hi = 60 if kind is int else 1.0
    assert parse_bounded(raw, kind, kind(0), hi, name="x") == expected


@pytest.mark.parametrize(("raw", "kind", "says"), [
    ("61", int, "X must be between 0 and 60, got 61"),
    ("-1", int, "X must be between 0 and 60, got -1"),
    ("1.5", int, "X must be an integer, got '1.5'"),
    ("nan", float, "X must be between 0 and 60, got nan"),
    ("inf", float, "X must be between 0 and 60, got inf"),
    ("lots", float, "X must be a number, got 'lots'"),
])
def test_refusals_name_the_setting_and_the_value(raw, kind, says):
    with pytest.raises(ValueError) as info:
        parse_bounded(raw, kind, kind(0), kind(60), name="X")
    assert str(info.value) == says


def test_the_caller_chooses_the_error_class_and_the_noun():
    with pytest.raises(SettingsError, match="^X must be a probability, got 'p'$"):
        parse_bounded("p", float, 0.0, 1.0, name="X", noun="a probability", error=SettingsError)
    with pytest.raises(SettingsError, match=r"^X must be between 0 and 100000 messages/s, got 200000.0$"):
        parse_bounded("200000", float, 0.0, 100_000.0, name="X", unit=" messages/s", error=SettingsError)
