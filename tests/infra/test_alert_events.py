"""The alerts key on event names in the functions' structured logs; a renamed event would silently
disarm an alert. Every event an alert filters on must be one the code emits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra import config
from infra.components.monitoring import log_metrics

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dev_config(dev_raw):
    return config.load(dev_raw, has_slack_token=False)


def emitted_events() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "batchline").rglob("*.py"):
        names |= set(re.findall(r'log_event\(\s*"([a-z_]+)"', path.read_text()))
    return names


def test_every_alerted_event_is_emitted(dev_config):
    alerted = {name for m in log_metrics(dev_config) for name in re.findall(r'jsonPayload\.event="([a-z_]+)"',
                                                                              m.condition)}
    assert alerted, "the metrics filter on events"
    missing = alerted - emitted_events()
    assert not missing, f"alerts filter on events no function logs: {sorted(missing)}"


def test_failure_events_all_reach_an_alert(dev_config):
    alerted = {name for m in log_metrics(dev_config) for name in re.findall(r'jsonPayload\.event="([a-z_]+)"',
                                                                              m.condition)}
    for event in ("staging_write_failed", "staging_gap", "consolidation_failed", "dml_rate_limited",
                  "item_dead_lettered", "reconciliation_gap", "late_completion", "message_rejected",
                  "dispatch_failed", "coverage_low", "start_refused_stale_inputs"):
        assert event in alerted, f"{event} is logged but no alert watches it"
