"""The functions' environment contract has one source, `batchline.settings.Settings`: it renders its
own variables (`as_env`, `deployed_env`) and reads them back (`from_env`). Infra renders each
function's environment through it, and the policy set requires exactly those variables. A variable
dropped from the rendering, or a setting added without one, fails here (issue 7 item 12)."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from batchline import settings
from infra import config, function_spec
from infra.function_spec import function_env, function_settings

# A value different from the default for every setting: a setting whose variable is not rendered
# reads back as its default and the round trip fails.
NON_DEFAULT = {
    "project": "other-project", "topic_prefix": "other", "main_dataset": "main_x", "main_table": "tbl_x",
    "context_table": "ctx_x", "staging_dataset": "stg_x", "bq_location": "EU", "firestore_database": "batchline-eu",
    "stall_minutes": 17,
    "min_completion_pct": 12.5, "coverage_warning_pct": 91.0, "coverage_critical_pct": 80.0,
    "allow_faults": True, "timezone": "Europe/Paris", "bigquery_emulator_host": "localhost:9050",
    "bigquery_write_emulator_host": "localhost:9060", "context_max_age_hours": 6, "orphan_age_hours": 48,
    "dispatch_rate": 12.5, "dispatch_budget_s": 300,
}
LOCAL_ONLY = {"allow_faults", "bigquery_emulator_host", "bigquery_write_emulator_host"}  # never in a deployment


def test_every_setting_is_listed_here():
    assert {f.name for f in dataclasses.fields(settings.Settings)} == set(NON_DEFAULT)
    for name, value in NON_DEFAULT.items():
        assert getattr(settings.Settings(), name) != value, name


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_each_setting_round_trips_through_its_env(name):
    s = settings.Settings(**{name: NON_DEFAULT[name]})
    assert settings.from_env(s.as_env()) == s


def test_deployed_env_round_trips_everything_but_local_switches():
    s = settings.Settings(**NON_DEFAULT)
    deployed = s.deployed_env()
    assert settings.ENV_ALLOW_FAULTS not in deployed and settings.ENV_BIGQUERY_EMULATOR_HOST not in deployed
    assert settings.ENV_BIGQUERY_WRITE_EMULATOR_HOST not in deployed
    back = settings.from_env(deployed)
    assert back == dataclasses.replace(s, allow_faults=False, bigquery_emulator_host=None,
                                       bigquery_write_emulator_host=None)


def test_infra_renders_the_env_through_settings(dev_raw, prod_raw):
    for raw in (dev_raw, prod_raw):
        cfg = config.load(raw, has_slack_token=True)
        env = function_env(cfg)
        assert settings.from_env(env) == function_settings(cfg)
        assert function_settings(cfg).timezone == cfg.schedules.start.time_zone
        assert settings.ENV_ALLOW_FAULTS not in env


def test_a_dropped_variable_is_caught(monkeypatch, dev_raw):
    """Break a copy of the rendering (drop one variable) and the round trip no longer holds."""
    cfg = config.load(copy.deepcopy(dev_raw))
    real = settings.Settings.deployed_env

    def dropping(self):
        env = real(self)
        env.pop(settings.ENV_STAGING_DATASET)
        return env

    monkeypatch.setattr(settings.Settings, "deployed_env", dropping)
    env = function_spec.function_env(cfg)
    assert settings.from_env(env) != function_settings(cfg)
