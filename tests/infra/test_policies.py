"""The rules that compare the deployment with its stack config (`Needs.CONFIG`: offline only, as
`python -m infra.policies` runs them) pass on every stack file, and each fails when the thing it
guards breaks; the runner's exit status. (The rules a pack runs too: test_rules.py.)

The breakage tests mutate a copy of the registered resources (as a wrong program would have
registered them) and assert the named rule reports that resource."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from infra import policies
from infra import resource_types as T
from infra.harness import Resource, StackRun, stack_view
from infra.rules import RULES, Needs

CONFIG_RULES = sorted(n for n, r in RULES.items() if r.needs is Needs.CONFIG)


def findings(name: str, run: StackRun) -> list:
    return RULES[name].check(stack_view(run))


@pytest.mark.parametrize("name", CONFIG_RULES)
def test_rule_passes_on_every_stack(any_run, name):
    assert findings(name, any_run) == []


def _mutated(run: StackRun, mutate: Callable[[list[Resource]], None]) -> StackRun:
    resources = copy.deepcopy(run.resources)
    mutate(resources)
    return StackRun(run.stack, run.config, resources, run.outputs)


def _one(resources: list[Resource], type_: str, name_contains: str) -> Resource:
    found = [r for r in resources if r.type == type_ and name_contains in r.name]
    assert found, f"no {type_} named like {name_contains}"
    return found[0]


def _drop(type_: str, name_contains: str) -> Callable[[list[Resource]], None]:
    def go(rs: list[Resource]) -> None:
        rs.remove(_one(rs, type_, name_contains))
    return go


def _edit(type_: str, name_contains: str, fn: Callable[[dict], None]) -> Callable[[list[Resource]], None]:
    def go(rs: list[Resource]) -> None:
        fn(_one(rs, type_, name_contains).inputs)
    return go


SUB, TOPIC_IAM, SUB_IAM = T.T_SUB, T.T_TOPIC_IAM, T.T_SUB_IAM
FN, JOB, ALERT = T.T_FUNCTION, T.T_JOB, T.T_ALERT

BREAKAGES = [
    ("subscription-delivery", "no dead-letter policy",
     _edit(SUB, "work-push", lambda i: i.pop("deadLetterPolicy"))),
    ("subscription-delivery", "max delivery attempts",
     _edit(SUB, "completions-push", lambda i: i["deadLetterPolicy"].update(maxDeliveryAttempts=200))),
    ("subscription-delivery", "no retry policy", _edit(SUB, "consolidation-push", lambda i: i.pop("retryPolicy"))),
    ("subscription-delivery", "ack deadline", _edit(SUB, "summary-pull", lambda i: i.update(ackDeadlineSeconds=5))),
    ("subscription-delivery", "may expire", _edit(SUB, "work-dlq-pull", lambda i: i.pop("expirationPolicy"))),
    ("dead-letter-readers-and-grants", "no pull subscription", _drop(SUB, "work-dlq-pull")),
    ("dead-letter-readers-and-grants", "lacks roles/pubsub.publisher", _drop(TOPIC_IAM, "work-dlq-agent-publisher")),
    ("dead-letter-readers-and-grants", "lacks roles/pubsub.subscriber",
     _drop(SUB_IAM, "completions-push-agent-subscriber")),
    ("function-caps", "maxInstanceCount", _edit(FN, "fn-worker", lambda i: i["serviceConfig"].update(
        maxInstanceCount=100))),
    ("function-caps", "maxInstanceRequestConcurrency", _edit(FN, "fn-coordinator", lambda i: i["serviceConfig"].update(
        maxInstanceRequestConcurrency=80))),
    ("function-runtime", "BATCHLINE_ALLOW_FAULTS", _edit(FN, "fn-worker", lambda i: i["serviceConfig"][
        "environmentVariables"].update(BATCHLINE_ALLOW_FAULTS="1"))),
    ("function-runtime", "ingress", _edit(FN, "fn-reconcile", lambda i: i["serviceConfig"].update(
        ingressSettings="ALLOW_ALL"))),
    ("function-runtime", "missing settings variables", _edit(FN, "fn-reconcile", lambda i: i["serviceConfig"][
        "environmentVariables"].pop("BATCHLINE_STAGING_DATASET"))),
    ("no-public-access", "public member", _edit(T.T_DATASET_IAM, "bq-main", lambda i: i.update(
        member="allAuthenticatedUsers"))),
    ("invokers", "may not invoke", _edit(T.T_RUN_IAM, "fn-worker-invoker",
                                         lambda i: i.update(member="allUsers"))),
    ("invokers", "needs roles/run.invoker",
     _drop(T.T_RUN_IAM, "fn-reconcile-invoker-scheduler")),
    ("oidc", "no OIDC token", _edit(JOB, "scheduler-start", lambda i: i["httpTarget"].pop("oidcToken"))),
    ("oidc", "no OIDC token", _edit(SUB, "work-push", lambda i: i["pushConfig"].pop("oidcToken"))),
    ("oidc", "no retry config", _edit(JOB, "scheduler-reconcile", lambda i: i.pop("retryConfig"))),
    ("alerts", "expected exactly one alert policy", _drop(ALERT, "monitoring-coverage-critical")),
    ("alerts", "notification channels", _edit(ALERT, "monitoring-staging-gap",
                                              lambda i: i.update(notificationChannels=[]))),
    ("alerts", "no runbook", _edit(ALERT, "monitoring-dml-rate-limited", lambda i: i.pop("documentation"))),
    ("alerts", "not watched", _edit(ALERT, "monitoring-dead-letter-messages",
                                    lambda i: i.update(conditions=i["conditions"][1:]))),
    ("topology", "not deployed", _drop(SUB, "completions-dlq-push")),
    ("topology", "not in the shared topology", _edit(SUB, "consolidation-push", lambda i: i["pushConfig"].update(
        pushEndpoint=i["pushConfig"]["pushEndpoint"].replace("/consolidate", "/completions")))),
    ("bigquery", "no default table expiration", _edit(T.T_DATASET, "bq-staging",
                                                      lambda i: i.pop("defaultTableExpirationMs"))),
    ("bigquery", "not clustered", _edit(T.T_TABLE, "bq-main-table", lambda i: i.update(clusterings=[]))),
    ("least-privilege", "may not hold roles/bigquery.admin", _edit(T.T_PROJECT_IAM, "sa-worker",
                                                                 lambda i: i.update(role="roles/bigquery.admin"))),
]


@pytest.mark.parametrize("policy, reason, mutate", BREAKAGES,
                         ids=[f"{p}:{r}" for p, r, _ in BREAKAGES])
def test_policy_detects_breakage(prod_run, policy, reason, mutate):
    assert findings(policy, prod_run) == []
    found = findings(policy, _mutated(prod_run, mutate))
    assert any(reason in f.reason for f in found), found


def test_every_config_rule_has_a_breakage_test():
    """The rules a pack runs too have theirs in test_rules.py, which checks that each has one."""
    assert set(CONFIG_RULES) <= {p for p, _, _ in BREAKAGES}


def test_runner_exit_status(capsys):
    assert policies.main(["--stack", "dev"]) == 0
    assert "0 violation(s)" in capsys.readouterr().out
    assert policies.main(["--stack", "prod"]) == 2  # the Slack token secret is missing
    assert "batchline:slack_token" in capsys.readouterr().err
    assert policies.main(["--stack", "prod", "--secret", "slack_token=x", "--policy", "alerts"]) == 0
