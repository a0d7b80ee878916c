"""Start only on fresh inputs: the staleness decision, its settings and its HTTP answer."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from batchline import settings as st_mod
from batchline.adapters.freshness import is_stale
from batchline.domain.errors import StaleInputs
from batchline.domain.messages import StartRequest, parse_model
from batchline.domain.schema import CONTEXT_TABLE_COLUMNS
from batchline.http import run
from batchline.settings import SettingsError, from_env

NOW = dt.datetime(2030, 1, 2, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("newest", "max_age", "stale"), [
    (NOW - dt.timedelta(hours=1), 24, False),
    (NOW - dt.timedelta(hours=24), 24, False),  # exactly the allowed age is still fresh
    (NOW - dt.timedelta(hours=24, seconds=1), 24, True),
    (NOW - dt.timedelta(days=30), 24, True),
    (None, 24, True),  # rows without a load time: nobody can say they are fresh
    (None, 0, False),  # 0 disables the check
    (NOW - dt.timedelta(days=30), 0, False),
    ((NOW - dt.timedelta(hours=2)).replace(tzinfo=None), 1, True),  # naive = UTC
])
def test_staleness(newest, max_age, stale):
    assert is_stale(newest, NOW, max_age) is stale


def test_settings_default_bounds_and_round_trip():
    s = from_env({})
    assert (s.context_max_age_hours, s.orphan_age_hours) == (24, 24)
    s = from_env({st_mod.ENV_CONTEXT_MAX_AGE_HOURS: "0", st_mod.ENV_ORPHAN_AGE_HOURS: "744"})
    assert (s.context_max_age_hours, s.orphan_age_hours) == (0, 744)
    assert from_env(s.as_env()) == s


@pytest.mark.parametrize(("var", "value"), [
    (st_mod.ENV_CONTEXT_MAX_AGE_HOURS, "-1"), (st_mod.ENV_CONTEXT_MAX_AGE_HOURS, "745"),
    (st_mod.ENV_CONTEXT_MAX_AGE_HOURS, "1.5"), (st_mod.ENV_ORPHAN_AGE_HOURS, "0"),
    (st_mod.ENV_ORPHAN_AGE_HOURS, "x"),
])
def test_bad_settings_name_the_variable(var, value):
    with pytest.raises(SettingsError, match=var):
        from_env({var: value})


def test_stale_inputs_answer_424_with_a_structured_error_line(capsys):
    newest = NOW - dt.timedelta(hours=30)

    def refuse() -> dict:
        raise StaleInputs(dt.date(2030, 1, 2), newest, 24, 450)

    body, code, _ = run("start", refuse)
    assert code == 424
    answer = json.loads(body)
    assert answer["ok"] is False and answer["game_date"] == "2030-01-02" and answer["max_age_hours"] == 24
    assert "stale" in answer["error"]
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["event"] == "start_refused_stale_inputs" and line["severity"] == "ERROR"
    assert line["game_date"] == "2030-01-02" and line["max_age_hours"] == 24 and line["context_rows"] == 450
    assert line["newest_loaded_at"].startswith("2030-01-01T06:00")


def test_context_table_carries_a_load_time_and_the_override_is_explicit():
    assert any(c.name == "loaded_at" and c.type == "TIMESTAMP" and c.mode == "NULLABLE"
               for c in CONTEXT_TABLE_COLUMNS)
    assert parse_model(StartRequest, {}).accept_stale_inputs is False
    assert parse_model(StartRequest, {"accept_stale_inputs": True}).accept_stale_inputs is True
