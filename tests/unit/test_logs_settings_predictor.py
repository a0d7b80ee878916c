"""Unit tests for batchline.logs, batchline.settings, batchline.domain.predictor and worker.build_rows."""

from __future__ import annotations

import datetime as dt
import json
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchline import logs
from batchline import settings as st_mod
from batchline.domain import predictor as pred
from batchline.domain.messages import WorkMessage
from batchline.domain.schema import MAIN_TABLE_COLUMNS, PREDICTION_SYSTEMS, main_column_names
from batchline.flows.work import build_rows
from batchline.settings import Settings, SettingsError, from_env

FAST = settings(max_examples=200, deadline=None)
BATCH = "20260115_0123456789ab"


# -- logs ---------------------------------------------------------------------------------------
def test_log_event_writes_one_json_line(capsys):
    record = logs.log_event("staging_write_failed", severity="ERROR", message="boom", batch_id=BATCH,
                            item="lebron", staging_table="stg_x", row_count=3)
    out = capsys.readouterr().out
    assert out.endswith("\n") and out.count("\n") == 1
    parsed = json.loads(out)
    assert parsed == record
    assert parsed["severity"] == "ERROR"
    assert parsed["message"] == "boom"
    assert parsed["event"] == "staging_write_failed"
    assert parsed["batch_id"] == BATCH
    assert parsed["item"] == "lebron"
    assert parsed["staging_table"] == "stg_x" and parsed["row_count"] == 3
    assert dt.datetime.fromisoformat(parsed["time"]).tzinfo is not None


def test_log_event_defaults(capsys):
    logs.log_event("item_completed")
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["severity"] == "INFO"
    assert parsed["message"] == "item completed"
    assert parsed["batch_id"] is None and parsed["item"] is None


def test_log_event_serialises_non_json_values(capsys):
    logs.log_event("x", when=dt.date(2026, 1, 15), text="line1\nline2")
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # embedded newlines stay escaped: still one line
    parsed = json.loads(out)
    assert parsed["when"] == "2026-01-15" and parsed["text"] == "line1\nline2"


@pytest.mark.parametrize("severity", logs.SEVERITIES)
def test_log_event_accepts_known_severities(severity, capsys):
    assert json.loads(capsys.readouterr().out or "{}") == {}
    logs.log_event("e", severity=severity)
    assert json.loads(capsys.readouterr().out)["severity"] == severity


@pytest.mark.parametrize("severity", ["info", "WARN", "FATAL", "", "ERROR "])
def test_log_event_rejects_unknown_severity(severity, capsys):
    with pytest.raises(ValueError, match="severity"):
        logs.log_event("e", severity=severity)
    assert capsys.readouterr().out == ""


# -- settings -----------------------------------------------------------------------------------
def test_from_env_defaults():
    assert from_env({}) == Settings()
    s = from_env({})
    assert s.stall_minutes == 30 and s.min_completion_pct == 0.0 and s.allow_faults is False
    assert s.main_table_id == "batchline-local.predictions.player_prop_predictions"
    assert s.context_table_id == "batchline-local.predictions.player_game_context"


def test_from_env_empty_values_fall_back_to_defaults():
    env = {k: "" for k in Settings().as_env()}
    assert from_env(env) == Settings()


def test_from_env_reads_values():
    env = {st_mod.ENV_PROJECT: "my-project", st_mod.ENV_STALL_MINUTES: "45",
           st_mod.ENV_MIN_COMPLETION_PCT: "92.5", st_mod.ENV_ALLOW_FAULTS: "1",
           st_mod.ENV_BIGQUERY_EMULATOR_HOST: "localhost:9050", st_mod.ENV_BQ_LOCATION: "europe-west1"}
    s = from_env(env)
    assert (s.project, s.stall_minutes, s.min_completion_pct, s.allow_faults, s.bigquery_emulator_host,
            s.bq_location) == ("my-project", 45, 92.5, True, "localhost:9050", "europe-west1")


def test_from_env_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv(st_mod.ENV_MAIN_TABLE, "other_table")
    assert from_env().main_table == "other_table"


@pytest.mark.parametrize(("var", "value"), [
    ("BATCHLINE_MAIN_DATASET", "x;drop"),
    ("BATCHLINE_MAIN_DATASET", "a.b"),
    ("BATCHLINE_STAGING_DATASET", "stg-1"),
    ("BATCHLINE_MAIN_TABLE", "t`x"),
    ("BATCHLINE_CONTEXT_TABLE", "ctx table"),
    ("BATCHLINE_PROJECT", "Bad_Project"),
    ("BATCHLINE_TOPIC_PREFIX", "UPPER"),
    ("BATCHLINE_BQ_LOCATION", "u"),
    ("BATCHLINE_STALL_MINUTES", "0"),
    ("BATCHLINE_STALL_MINUTES", "1441"),
    ("BATCHLINE_STALL_MINUTES", "abc"),
    ("BATCHLINE_STALL_MINUTES", "1.5"),
    ("BATCHLINE_MIN_COMPLETION_PCT", "101"),
    ("BATCHLINE_MIN_COMPLETION_PCT", "-0.1"),
    ("BATCHLINE_MIN_COMPLETION_PCT", "abc"),
    ("BATCHLINE_MIN_COMPLETION_PCT", "nan"),
])
def test_from_env_bad_value_names_variable(var, value):
    with pytest.raises(SettingsError) as info:
        from_env({var: value})
    assert var in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("var", "value", "field", "expected"), [
    ("BATCHLINE_STALL_MINUTES", "1", "stall_minutes", 1),
    ("BATCHLINE_STALL_MINUTES", "1440", "stall_minutes", 1440),
    ("BATCHLINE_MIN_COMPLETION_PCT", "100", "min_completion_pct", 100.0),
    ("BATCHLINE_MIN_COMPLETION_PCT", "0", "min_completion_pct", 0.0),
])
def test_from_env_bounds_inclusive(var, value, field, expected):
    assert getattr(from_env({var: value}), field) == expected


@pytest.mark.parametrize("raw", ["0", "true", "yes", ""])
def test_allow_faults_only_exactly_one(raw):
    assert from_env({st_mod.ENV_ALLOW_FAULTS: raw}).allow_faults is False


settings_strategy = st.builds(
    Settings,
    project=st.from_regex(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", fullmatch=True).filter(str.isascii),
    topic_prefix=st.from_regex(r"[a-z][a-z0-9-]{0,39}", fullmatch=True).filter(str.isascii),
    main_dataset=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True).filter(str.isascii),
    main_table=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True).filter(str.isascii),
    context_table=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True).filter(str.isascii),
    staging_dataset=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True).filter(str.isascii),
    bq_location=st.sampled_from(["US", "EU", "europe-west1", "us-central1"]),
    stall_minutes=st.integers(1, 1440),
    min_completion_pct=st.floats(0, 100, allow_nan=False),
    allow_faults=st.booleans(),
    bigquery_emulator_host=st.none() | st.just("localhost:9050"),
)


@FAST
@given(settings_strategy)
def test_as_env_round_trips(s):
    env = s.as_env()
    assert all(isinstance(v, str) for v in env.values())
    assert from_env(env) == s


def test_staging_table_id_validates():
    assert Settings().staging_table_id("stg_a") == "batchline-local.batchline_staging.stg_a"
    with pytest.raises(ValueError):
        Settings().staging_table_id("a`; DROP TABLE x")


# -- predictor ----------------------------------------------------------------------------------
CTX = pred.PlayerContext(dt.date(2026, 1, 15), "lebron_james", "G1")


def test_synthetic_predictor_is_deterministic():
    a = pred.SyntheticPredictor().predict(CTX)
    b = pred.SyntheticPredictor().predict(pred.PlayerContext(dt.date(2026, 1, 15), "lebron_james", "G1"))
    assert a == b


def test_synthetic_predictor_varies_with_player_and_date():
    base = pred.SyntheticPredictor().predict(CTX)
    other_player = pred.SyntheticPredictor().predict(pred.PlayerContext(CTX.game_date, "steph_curry", "G1"))
    other_date = pred.SyntheticPredictor().predict(pred.PlayerContext(dt.date(2026, 1, 16), "lebron_james", "G1"))
    assert base != other_player and base != other_date


players = st.from_regex(r"[a-z0-9][a-z0-9_]{0,20}", fullmatch=True).filter(str.isascii)
dates = st.dates(dt.date(2000, 1, 1), dt.date(2100, 12, 31))


@FAST
@given(day=dates, player=players)
def test_synthetic_predictor_row_shape(day, player):
    rows = pred.SyntheticPredictor().predict(pred.PlayerContext(day, player, "G1"))
    assert len(rows) == len(PREDICTION_SYSTEMS) == 5
    assert [r["system_id"] for r in rows] == list(PREDICTION_SYSTEMS)
    for r in rows:
        assert set(r) == {"system_id", "prop_type", "predicted_value", "confidence", "line_value",
                          "recommendation"}
        assert r["prop_type"] == "points"
        assert 0.0 <= r["confidence"] <= 1.0
        assert r["recommendation"] in {"OVER", "UNDER", "PASS"}
        edge = r["predicted_value"] - r["line_value"]
        if r["recommendation"] == "OVER":
            assert edge >= 1.0 and r["confidence"] >= 0.55
        elif r["recommendation"] == "UNDER":
            assert edge <= -1.0 and r["confidence"] >= 0.55


def test_synthetic_predictor_produces_every_recommendation():
    seen = {r["recommendation"] for i in range(100)
            for r in pred.SyntheticPredictor().predict(pred.PlayerContext(CTX.game_date, f"p{i}", "G1"))}
    assert seen == {"OVER", "UNDER", "PASS"}


def test_prediction_id_is_stable():
    assert pred.prediction_id(CTX, "ensemble", "points") == pred.prediction_id(
        pred.PlayerContext(dt.date(2026, 1, 15), "lebron_james", "G1"), "ensemble", "points")
    pid = pred.prediction_id(CTX, "ensemble", "points")
    assert len(pid) == 32 and all(ch in "0123456789abcdef" for ch in pid)


@FAST
@given(d1=dates, d2=dates, p1=players, p2=players, s1=st.sampled_from(PREDICTION_SYSTEMS),
       s2=st.sampled_from(PREDICTION_SYSTEMS), g1=st.sampled_from(["G1", "G2"]), g2=st.sampled_from(["G1", "G2"]))
def test_prediction_id_distinct_per_key(d1, d2, p1, p2, s1, s2, g1, g2):
    a = pred.prediction_id(pred.PlayerContext(d1, p1, g1), s1, "points")
    b = pred.prediction_id(pred.PlayerContext(d2, p2, g2), s2, "points")
    assert (a == b) == ((d1, p1, g1, s1) == (d2, p2, g2, s2))


def test_prediction_ids_distinct_across_systems_and_players():
    ids = {pred.prediction_id(pred.PlayerContext(d, p, "G1"), s, "points")
           for d in (dt.date(2026, 1, 15), dt.date(2026, 1, 16)) for p in ("a", "b", "c") for s in PREDICTION_SYSTEMS}
    assert len(ids) == 2 * 3 * 5


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    name = "batchline_test_custom_predictor_mod"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        class Const:
            def predict(self, ctx):
                return [{"system_id": "custom", "prop_type": "rebounds", "predicted_value": 1.0,
                         "confidence": 0.9, "line_value": 0.5, "recommendation": "OVER"}]

        INSTANCE = Const()
        INSTANCE.tag = "instance"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_load_predictor_instance(custom_module):
    p = pred.load_predictor(f"{custom_module}:INSTANCE")
    assert p.tag == "instance"
    assert p.predict(CTX)[0]["system_id"] == "custom"


def test_load_predictor_class_is_instantiated(custom_module):
    p = pred.load_predictor(f"{custom_module}:Const")
    assert not isinstance(p, type)
    assert p.predict(CTX)[0]["prop_type"] == "rebounds"


def test_load_predictor_from_env(custom_module, monkeypatch):
    monkeypatch.setenv(pred.ENV_PREDICTOR, f"{custom_module}:INSTANCE")
    assert pred.load_predictor().tag == "instance"
    monkeypatch.setenv(pred.ENV_PREDICTOR, "")
    assert isinstance(pred.load_predictor(), pred.SyntheticPredictor)


def test_load_predictor_default_is_synthetic(monkeypatch):
    monkeypatch.delenv(pred.ENV_PREDICTOR, raising=False)
    assert isinstance(pred.load_predictor(), pred.SyntheticPredictor)
    assert isinstance(pred.load_predictor(""), pred.SyntheticPredictor)
    assert isinstance(pred.load_predictor("batchline.domain.predictor:SyntheticPredictor"), pred.SyntheticPredictor)


@pytest.mark.parametrize("spec", ["no_colon", ":attr", "module:", ":", "batchline.domain.predictor"])
def test_load_predictor_rejects_malformed_spec(spec):
    with pytest.raises(ValueError, match=f"{pred.ENV_PREDICTOR} must be 'module:attribute'"):
        pred.load_predictor(spec)


# -- worker.build_rows --------------------------------------------------------------------------
def _msg(item: str = "lebron_james", day: str = "2026-01-15") -> WorkMessage:
    return WorkMessage(batch_id=BATCH, game_date=day, item_id=item, game_id="G1")


NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)


def test_build_rows_has_exactly_the_main_table_columns():
    rows = build_rows(_msg(), pred.SyntheticPredictor(), NOW)
    assert len(rows) == len(PREDICTION_SYSTEMS)
    for row in rows:
        assert set(row) == set(main_column_names()) == {c.name for c in MAIN_TABLE_COLUMNS}


def test_build_rows_fills_ids_and_bookkeeping():
    msg = _msg()
    rows = build_rows(msg, pred.SyntheticPredictor(), NOW)
    ctx = pred.PlayerContext(msg.game_date, msg.item_id, msg.game_id)
    for row in rows:
        assert row["prediction_id"] == pred.prediction_id(ctx, row["system_id"], row["prop_type"])
        assert row["game_date"] == "2026-01-15"
        assert row["player_lookup"] == "lebron_james" and row["game_id"] == "G1" and row["batch_id"] == BATCH
        assert row["created_at"] == row["updated_at"] == NOW.isoformat()
        assert row["is_active"] is True
    assert len({r["prediction_id"] for r in rows}) == len(rows)


def test_build_rows_required_columns_non_null():
    required = [c.name for c in MAIN_TABLE_COLUMNS if c.mode == "REQUIRED"]
    for row in build_rows(_msg(), pred.SyntheticPredictor(), NOW):
        assert all(row[c] is not None for c in required)


def test_build_rows_ids_stable_across_batches():
    a = build_rows(_msg(), pred.SyntheticPredictor(), NOW)
    b = build_rows(WorkMessage(batch_id="20260115_ffffffffffff", game_date="2026-01-15", item_id="lebron_james",
                               game_id="G1"), pred.SyntheticPredictor(), NOW + dt.timedelta(hours=1))
    assert [r["prediction_id"] for r in a] == [r["prediction_id"] for r in b]
