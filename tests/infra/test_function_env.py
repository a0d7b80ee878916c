"""Infra hands every function the settings batchline.settings reads, and nothing that enables faults."""

from __future__ import annotations

from batchline import settings
from infra import config
from infra.components.functions import function_env


def test_function_env_is_readable_by_the_functions_and_carries_the_schedule_zone(dev_raw, prod_raw):
    for raw in (dev_raw, prod_raw):
        cfg = config.load(raw, has_slack_token=True)
        env = function_env(cfg)
        s = settings.from_env(env)  # raises if infra wrote anything the functions would reject
        assert s.timezone == cfg.schedules.start.time_zone
        assert (s.coverage_warning_pct, s.coverage_critical_pct) == (cfg.thresholds.coverage_warning_pct,
                                                                     cfg.thresholds.coverage_critical_pct)
        assert s.project == cfg.gcp.project and s.main_table == cfg.bigquery.main_table
        assert settings.ENV_ALLOW_FAULTS not in env and not s.allow_faults
