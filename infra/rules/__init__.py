"""Every rule, by name: the one catalogue the CrossGuard pack (the rules it can evaluate), the offline
runner (`python -m infra.policies`, all of them) and the tests read. Each module holds the rules on one
kind of resource; infra/rules/engine.py says what a rule is."""

from __future__ import annotations

from infra.rules import bigquery, calls, functions, grants, monitoring, pubsub
from infra.rules.engine import Finding, Needs, Rule, catalogue
from infra.view import Stack

RULES: dict[str, Rule] = catalogue(grants.RULES, functions.RULES, calls.RULES, pubsub.RULES, monitoring.RULES,
                                   bigquery.RULES)


def check(stack: Stack, names: list[str] | None = None, *, offline: bool = True) -> list[Finding]:
    """The findings of the named rules (all by default) on `stack`; `offline=False`: a pack's rules only."""
    return [f for r in RULES.values() if (names is None or r.name in names) and (offline or not r.offline)
            for f in r.check(stack)]


__all__ = ["RULES", "Finding", "Needs", "Rule", "check"]
