"""The alerts key on event names in the functions' structured logs; a renamed event would silently
disarm an alert. Every event an alert filters on must be one the code emits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra import config
from infra.alerts import log_metrics

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


def _fields_logged_with(event: str) -> set[str]:
    """Keyword arguments of every `log_event("<event>", ...)` call in batchline/ (the JSON fields)."""
    import ast

    fields: set[str] = set()
    for path in (ROOT / "batchline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "log_event" and node.args
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value == event):
                fields |= {k.arg for k in node.keywords if k.arg}
    return fields


def test_every_field_an_alert_reads_is_logged_with_its_event(dev_config):
    """A renamed field disarms an alert as silently as a renamed event (the staging gap alert read
    `missing_staging_tables` after the coordinator had renamed it)."""
    checked = 0
    for m in log_metrics(dev_config):
        events = re.findall(r'jsonPayload\.event="([a-z_]+)"', m.condition)
        fields = set(re.findall(r"jsonPayload\.([a-z_]+)", m.condition)) - {"event"}
        for field in fields:
            assert any(field in _fields_logged_with(e) for e in events), \
                f"alert {m.name} reads jsonPayload.{field}, which no log_event of {events} writes"
            checked += 1
    assert checked, "some alert reads a field besides the event"


def test_failure_events_all_reach_an_alert(dev_config):
    alerted = {name for m in log_metrics(dev_config) for name in re.findall(r'jsonPayload\.event="([a-z_]+)"',
                                                                              m.condition)}
    # item_dead_lettered is not in this list: dead letters page through Pub/Sub's own
    # dead_letter_message_count of every source subscription (test_dead_letters_page_on_pubsubs_count),
    # which also covers topics whose dead letters the coordinator never logs.
    for event in ("staging_write_failed", "staging_gap", "consolidation_failed", "dml_rate_limited",
                  "reconciliation_gap", "late_completion", "message_rejected",
                  "dispatch_failed", "coverage_low", "start_refused_stale_inputs", "scheduled_call_refused"):
        assert event in alerted, f"{event} is logged but no alert watches it"


def test_dead_letters_page_on_pubsubs_count(dev_run):
    from batchline.topology import build_topology
    from infra.alerts import DEAD_LETTER_METRIC
    from infra.resource_types import T_ALERT

    sources = {s.name for t in build_topology(dev_run.config.pubsub.topic_prefix).topics for s in t.subscriptions
               if s.dead_letter}
    alert = next(a for a in dev_run.of_type(T_ALERT)
                 if a.inputs["userLabels"]["batchline_alert"] == "dead_letter_messages")
    watched = {re.search(r'subscription_id="([^"]+)"', c["conditionThreshold"]["filter"]).group(1)
               for c in alert.inputs["conditions"] if DEAD_LETTER_METRIC in c["conditionThreshold"]["filter"]}
    assert watched == sources
