"""issue 8: what the program grants operators (`batchline:operators`) and the coordinator for the
control path, read from the registered resources under mocks. The rules (operator-grants,
operator-grants-complete) cannot see stack config, so an operator the program forgot entirely is
caught here, not there."""

from __future__ import annotations

import copy

import pytest

from infra import harness
from infra import resource_types as T
from infra.access import DEAD_LETTER_KEYS, OPERATOR_ACCESS
from infra.harness import stack_view
from infra.rules.reading import declared_set, granted_set, operator_grants_of

OPERATORS = ["group:ops@example.com", "user:alice@example.com", "serviceAccount:bot@p.iam.gserviceaccount.com"]


def _held(run: harness.StackRun) -> dict[str, set[tuple[str, str, str]]]:
    stack = stack_view(run)
    held: dict[str, set[tuple[str, str, str]]] = {}
    for member, g in operator_grants_of(stack):
        held.setdefault(member, set()).update(granted_set(stack, g))
    return held


@pytest.fixture(scope="module")
def three_operators(dev_raw) -> harness.StackRun:
    raw = copy.deepcopy(dev_raw)
    raw["operators"] = OPERATORS
    return harness.run_program(raw, stack="dev")


def test_every_configured_operator_gets_exactly_operator_access(three_operators):
    assert _held(three_operators) == {m: declared_set(OPERATOR_ACCESS) for m in OPERATORS}


def test_prod_operator_group_is_granted(prod_run):
    assert set(_held(prod_run)) == {"group:batchline-operators@example.com"}


def test_no_operators_no_operator_grants(dev_run):
    assert dev_run.config.operators == () and _held(dev_run) == {}


def test_operator_access_is_what_the_cli_needs():
    want = {("topic", "control", "roles/pubsub.publisher"), ("project", "", "roles/datastore.viewer"),
            ("project", "", "roles/bigquery.jobUser"), ("dataset", "main", "roles/bigquery.dataViewer"),
            # `batchline ledger`: every user's MERGE jobs (bigquery.jobs.listAll), the staging table's
            # existence (tables.get); the ADC quota project (serviceusage.services.use)
            ("project", "", "roles/bigquery.resourceViewer"), ("dataset", "staging", "roles/bigquery.metadataViewer"),
            ("project", "", "roles/serviceusage.serviceUsageConsumer")}
    want |= {("subscription", k, "roles/pubsub.subscriber")
             for k in ("work", "completions", "consolidation", "control")}
    assert declared_set(OPERATOR_ACCESS) == want
    assert set(DEAD_LETTER_KEYS) == {"work", "completions", "consolidation", "control"}


def test_dead_letter_pull_subscriptions_carry_their_topic_key(prod_run):
    """Every dlq-pull subscription (summary's too, which nobody is granted) and no other."""
    labelled = {s.get("name"): s.label("batchline-dead-letters") for s in stack_view(prod_run).of_type(T.T_SUB)
                if s.label("batchline-dead-letters") is not None}
    assert labelled == {f"batchline-{k}-dlq-pull": k for k in (*DEAD_LETTER_KEYS, "summary")}


def test_operator_grants_are_replaced_with_their_resource(three_operators):
    """Grants on a topic, subscription or dataset name it in replace_with (re-created with it)."""
    stack = stack_view(three_operators)
    for _, g in operator_grants_of(stack):
        target = T.RESOURCE_GRANTS.get(g.type)
        if target is not None:
            assert set(g.deps[target]) <= set(g.replace_with or ()), g.name
