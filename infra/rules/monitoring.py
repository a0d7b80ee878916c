"""Rules on the alerts (F9): one policy per alert with the stack's channels and a runbook, log-match
policies shaped as the API accepts them on a first run, metric policies waiting for their metrics, and
new dead letters paging (a delta per source subscription, never the backlog operators keep)."""

from __future__ import annotations

import re

from infra.alerts import DEAD_LETTER_METRIC, F9_ALERTS
from infra.labels import ALERT_LABEL
from infra.resource_types import T_ALERT, T_CHANNEL, T_METRIC, T_SLEEP, T_SUB
from infra.rules.engine import Finding, Needs, rule
from infra.view import Stack, View

_WATCHED_SUBSCRIPTION = re.compile(r'subscription_id="([^"]+)"')


def _dead_letter_watched(filters: list[str]) -> set[str]:
    """The subscriptions whose new dead letters these condition filters count."""
    return {m for f in filters if DEAD_LETTER_METRIC in f for m in _WATCHED_SUBSCRIPTION.findall(f)}


def _threshold_filters(alerts: list[View]) -> list[str]:
    return [f for a in alerts for c in (a.props.get("conditions") or []) if isinstance(c, dict)
            for f in [(c.get("conditionThreshold") or {}).get("filter")] if isinstance(f, str)]


@rule("alerts", mandatory=False, needs=Needs.CONFIG)
def alerts(stack: Stack) -> list[Finding]:
    """One alert policy per F9 alert, each notifying at least one channel of the stack, with a runbook;
    the dead-letter alert watches every dead-letter pull subscription."""
    out: list[Finding] = []
    channels = {c.outputs.get("name") for c in stack.of_type(T_CHANNEL)}
    by_key: dict[str, list[View]] = {}
    for a in stack.of_type(T_ALERT):
        by_key.setdefault((a.props.get("userLabels") or {}).get(ALERT_LABEL, "").replace("_", "-"), []).append(a)
    for key in F9_ALERTS:
        found = by_key.get(key, [])
        if len(found) != 1:
            out.append(Finding("alerts", key, f"expected exactly one alert policy, found {len(found)}"))
            continue
        a = found[0]
        chans = a.props.get("notificationChannels") or []
        if not chans or not set(chans) <= channels:
            out.append(Finding("alerts", a.name, f"notification channels {chans} not among the stack's {channels}"))
        if len((a.props.get("documentation") or {}).get("content", "")) < 40:
            out.append(Finding("alerts", a.name, "no runbook in the documentation"))
        if not a.props.get("conditions"):
            out.append(Finding("alerts", a.name, "no condition"))
    # new dead letters: Pub/Sub's delta count on every source subscription, not the kept backlog
    sources = {s.props.get("name") for s in stack.of_type(T_SUB) if s.props.get("deadLetterPolicy")}
    watched = _dead_letter_watched(_threshold_filters(by_key.get("dead-letter-messages", [])))
    for sub in sorted(sources - watched):
        out.append(Finding("alerts", sub, "source subscription's new dead letters not watched by the dead-letter "
                                          f"alert ({DEAD_LETTER_METRIC})"))
    return out


@rule("alerts-first-run", mandatory=False)
def alerts_first_run(stack: Stack) -> list[Finding]:
    """An alert policy on log-based metrics waits for a Sleep that starts after those metrics (the
    Monitoring API 404s on a metric minutes old); a log-match policy has one condition and a
    notification rate limit."""
    out = []
    for a in stack.of_type(T_ALERT):
        metrics = {m.urn for m in stack.deps_of(a, "conditions", T_METRIC)}
        if metrics:
            sleeps = stack.depends_on(a, T_SLEEP)
            if not any(metrics <= set(s.dependencies) for s in sleeps):
                out.append(Finding("alerts-first-run", a.name, "references log-based metrics without waiting for "
                                                               "a Sleep that depends on them"))
        conditions = a.get("conditions", default=[])
        if isinstance(conditions, list) and any(isinstance(c, dict) and c.get("conditionMatchedLog")
                                                for c in conditions):
            if len(conditions) != 1:
                out.append(Finding("alerts-first-run", a.name, "a log-match policy may have only one condition"))
            if not a.get("alertStrategy", "notificationRateLimit", "period"):
                out.append(Finding("alerts-first-run", a.name, "a log-match policy needs a notification rate limit"))
    return out


@rule("dead-letter-alert", mandatory=False)
def dead_letter_alert(stack: Stack) -> list[Finding]:
    """New dead letters page: every dead-lettering subscription's dead_letter_message_count is watched
    as a delta; no alert watches the backlog of a subscription operators keep messages in."""
    filters = _threshold_filters(stack.of_type(T_ALERT))
    watched = _dead_letter_watched(filters)
    out = []
    for s in stack.of_type(T_SUB):
        name = s.get("name")
        if s.get("deadLetterPolicy") and isinstance(name, str) and name not in watched:
            out.append(Finding("dead-letter-alert", s.name, "its new dead letters page nobody"))
    if any("num_undelivered_messages" in f for f in filters):
        out.append(Finding("dead-letter-alert", "alerts", "an alert watches a backlog (num_undelivered_messages): "
                                                          "it stays open and never pages for the next message"))
    return out


RULES = (alerts, alerts_first_run, dead_letter_alert)
