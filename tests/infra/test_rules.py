"""The rules that read only the neutral view (infra/rules/: those the CrossGuard pack runs, and the
offline-only one that reads replace_with), shared by the pack and the offline runner.

Each rule passes on every stack file, both as `pulumi up` sees the resources and as `pulumi preview`
does (every value another resource computes unknown), and each fails on a broken copy in both views.
(The rules that compare with the stack config: test_policies.py.)
A copy is broken the way a wrong program would register it: inputs, property dependencies,
depends_on or replace_with changed."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from infra import resource_types, rules
from infra.harness import Resource, StackRun, stack_view
from infra.rules import Needs
from infra.view import UNKNOWN

T = resource_types
VIEW_RULES = sorted(n for n, r in rules.RULES.items() if r.needs is not Needs.CONFIG)


def _one(rs: list[Resource], type_: str, name: str) -> Resource:
    found = [r for r in rs if r.type == type_ and r.name.endswith(name)]
    assert len(found) == 1, f"{type_} {name}: {[r.name for r in rs if r.type == type_]}"
    return found[0]


def _urn(rs: list[Resource], type_: str, name: str) -> str:
    return _one(rs, type_, name).urn


def edit(type_: str, name: str, fn: Callable[[Resource, list[Resource]], None]) -> Callable:
    def go(rs: list[Resource]) -> None:
        fn(_one(rs, type_, name), rs)
    return go


def inputs(type_: str, name: str, fn: Callable[[dict], None]) -> Callable:
    return edit(type_, name, lambda r, rs: fn(r.inputs))


def drop_dep(type_: str, name: str, prop: str, dep_type: str) -> Callable:
    def go(r: Resource, rs: list[Resource]) -> None:
        r.property_dependencies[prop] = [u for u in r.property_dependencies[prop]
                                         if not any(x.urn == u and x.type == dep_type for x in rs)]
    return edit(type_, name, go)


def _swap_topic(r: Resource, rs: list[Resource]) -> None:
    r.property_dependencies["topic"] = [_urn(rs, T.T_TOPIC, "batchline-summary")]


def _set_role(role: str) -> Callable[[dict], None]:
    return lambda i: i.update(role=role)


OPERATOR = "group:batchline-operators@example.com"
OP = OPERATOR.replace(":", "-")


def _on(prop: str, type_: str, name: str) -> Callable[[Resource, list[Resource]], None]:
    """Move a grant onto another resource (the property dependency naming what it is on)."""
    def go(r: Resource, rs: list[Resource]) -> None:
        r.property_dependencies[prop] = [_urn(rs, type_, name)]
    return go


def _to_worker(r: Resource, rs: list[Resource]) -> None:
    r.property_dependencies["member"] = [_urn(rs, T.T_ACCOUNT, "sa-worker")]


def _to_operator(r: Resource, rs: list[Resource]) -> None:
    r.inputs["member"] = OPERATOR
    r.property_dependencies["member"] = []


def _unlabel(r: Resource, rs: list[Resource]) -> None:
    r.inputs["labels"].pop("batchline-dead-letters")


BREAKAGES = [
    ("no-public-access", "primitive role", inputs(T.T_PROJECT_IAM, "sa-worker-datastore.user",
                                                  _set_role("roles/editor"))),
    ("no-public-access", "public member", inputs(T.T_RUN_IAM, "fn-worker-invoker-push",
                                                 lambda i: i.update(member="allUsers"))),
    ("function-ingress", "ingress", inputs(T.T_FUNCTION, "fn-worker",
                                           lambda i: i["serviceConfig"].update(ingressSettings="ALLOW_ALL"))),
    ("function-ingress", "BATCHLINE_ALLOW_FAULTS is set", inputs(T.T_FUNCTION, "fn-worker", lambda i: i[
        "serviceConfig"]["environmentVariables"].update(BATCHLINE_ALLOW_FAULTS="1"))),
    ("authenticated-calls", "no OIDC token", inputs(T.T_SUB, "batchline-work-push",
                                                    lambda i: i["pushConfig"].pop("oidcToken"))),
    ("authenticated-calls", "not minted for the push", drop_dep(T.T_SUB, "batchline-completions-push", "pushConfig",
                                                                T.T_ACCOUNT)),
    ("authenticated-calls", "does not call a function", drop_dep(T.T_JOB, "scheduler-reconcile", "httpTarget",
                                                                 T.T_FUNCTION)),
    # item 11: no role beyond what the account needs (the worker only appends to staging)
    ("least-privilege", "worker may not hold roles/bigquery.dataOwner",
     inputs(T.T_DATASET_IAM, "bq-staging-worker-dataEditor", _set_role("roles/bigquery.dataOwner"))),
    ("least-privilege", "reconcile may not hold roles/bigquery.admin",
     inputs(T.T_DATASET_IAM, "bq-staging-reconcile-dataEditor", _set_role("roles/bigquery.admin"))),
    ("least-privilege", "may not hold roles/pubsub.publisher on topic ['summary']",
     edit(T.T_TOPIC_IAM, "batchline-work-reconcile-publisher", _swap_topic)),
    ("least-privilege", "may not hold roles/bigquery.admin",
     inputs(T.T_PROJECT_IAM, "sa-worker-datastore.user", _set_role("roles/bigquery.admin"))),
    # issue 8: the coordinator pulls dead letters only from the dlq-pull subscriptions, nobody else does
    ("least-privilege", "coordinator may not hold roles/pubsub.editor on subscription",
     inputs(T.T_SUB_IAM, "batchline-control-dlq-pull-coordinator-subscriber", _set_role("roles/pubsub.editor"))),
    ("least-privilege", "coordinator may not hold roles/pubsub.subscriber on subscription ['batchline-work-push']",
     edit(T.T_SUB_IAM, "batchline-work-dlq-pull-coordinator-subscriber",
          _on("subscription", T.T_SUB, "batchline-work-push"))),
    ("least-privilege", "worker may not hold roles/pubsub.subscriber on subscription ['batchline-work-dlq-pull']",
     edit(T.T_SUB_IAM, "batchline-work-dlq-pull-coordinator-subscriber", _to_worker)),
    # item 9: a declared publisher grant the program forgot
    ("declared-grants-exist", "missing roles/pubsub.publisher on topic consolidation",
     lambda rs: rs.remove(_one(rs, T.T_TOPIC_IAM, "batchline-consolidation-reconcile-publisher"))),
    ("declared-grants-exist", "missing roles/run.invoker on function worker",
     lambda rs: rs.remove(_one(rs, T.T_RUN_IAM, "fn-worker-invoker-push"))),
    # issue 8: replay pulls every dlq-pull subscription and republishes completions and control
    ("declared-grants-exist", "missing roles/pubsub.subscriber on subscription control",
     lambda rs: rs.remove(_one(rs, T.T_SUB_IAM, "batchline-control-dlq-pull-coordinator-subscriber"))),
    ("declared-grants-exist", "missing roles/pubsub.publisher on topic control",
     lambda rs: rs.remove(_one(rs, T.T_TOPIC_IAM, "batchline-control-coordinator-publisher"))),
    ("declared-grants-exist", "missing roles/pubsub.subscriber on subscription completions",
     edit(T.T_SUB, "batchline-completions-dlq-pull", _unlabel)),
    # issue 8: operators hold exactly OPERATOR_ACCESS, and never an invoker role
    ("operator-grants", f"operator {OPERATOR} may not hold roles/datastore.user on the project",
     inputs(T.T_PROJECT_IAM, f"sa-operator-{OP}-datastore.viewer", _set_role("roles/datastore.user"))),
    ("operator-grants", f"operator {OPERATOR} may not hold roles/pubsub.subscriber on subscription "
                        "['batchline-work-push']",
     edit(T.T_SUB_IAM, f"batchline-work-dlq-pull-operator-{OP}-subscriber",
          _on("subscription", T.T_SUB, "batchline-work-push"))),
    ("operator-grants", f"operator {OPERATOR} may not hold roles/pubsub.publisher on topic ['work']",
     edit(T.T_TOPIC_IAM, f"batchline-control-operator-{OP}-publisher", _on("topic", T.T_TOPIC, "batchline-work"))),
    ("operator-grants", f"operator {OPERATOR} may not hold roles/bigquery.dataViewer on dataset ['staging']",
     edit(T.T_DATASET_IAM, f"bq-main-operator-{OP}-dataViewer", _on("datasetId", T.T_DATASET, "bq-staging"))),
    ("operator-grants", f"{OPERATOR} may not hold roles/run.invoker: no new invoker",
     edit(T.T_RUN_IAM, "fn-coordinator-invoker-push", _to_operator)),
    ("operator-grants-complete", f"{OPERATOR}: missing roles/bigquery.dataViewer on dataset main",
     lambda rs: rs.remove(_one(rs, T.T_DATASET_IAM, f"bq-main-operator-{OP}-dataViewer"))),
    ("operator-grants-complete", f"{OPERATOR}: missing roles/pubsub.subscriber on subscription consolidation",
     lambda rs: rs.remove(_one(rs, T.T_SUB_IAM, f"batchline-consolidation-dlq-pull-operator-{OP}-subscriber"))),
    # item 2
    ("build-service-account", "does not build as the build service account",
     edit(T.T_FUNCTION, "fn-coordinator", lambda r, rs: (r.inputs["buildConfig"].pop("serviceAccount"),
                                                         r.property_dependencies.__setitem__("buildConfig", [])))),
    ("build-service-account", "Google lists", inputs(T.T_PROJECT_IAM, "sa-build-storage.objectViewer",
                                                     _set_role("roles/storage.admin"))),
    # item 4
    ("function-memory-cpu", "needs at least 2 vCPU", inputs(T.T_FUNCTION, "fn-worker", lambda i: i[
        "serviceConfig"].update(availableMemory="8Gi"))),
    ("function-memory-cpu", "concurrency", inputs(T.T_FUNCTION, "fn-coordinator", lambda i: i[
        "serviceConfig"].update(availableCpu="0.583", availableMemory="1Gi"))),
    # items 5 and 6
    ("push-ack-deadline", "shorter than fn-worker's timeout", inputs(T.T_SUB, "batchline-work-push",
                                                                     lambda i: i.update(ackDeadlineSeconds=120))),
    ("push-ack-deadline", "shorter than fn-coordinator's timeout", inputs(T.T_SUB, "batchline-work-dlq-push",
                                                                          lambda i: i.update(ackDeadlineSeconds=60))),
    ("scheduler-deadline", "shorter than fn-reconcile's timeout", inputs(T.T_JOB, "scheduler-reconcile",
                                                                         lambda i: i.update(attemptDeadline="600s"))),
    # item 12
    ("function-env-contract", "missing ['BATCHLINE_STAGING_DATASET']", inputs(T.T_FUNCTION, "fn-reconcile", lambda i: i[
        "serviceConfig"]["environmentVariables"].pop("BATCHLINE_STAGING_DATASET"))),
    # item 8
    ("pubsub-agent-identity", "not from ServiceIdentity", edit(
        T.T_SUB_IAM, "batchline-work-push-agent-subscriber",
        lambda r, rs: (r.inputs.update(member="serviceAccount:service-1@gcp-sa-pubsub.iam.gserviceaccount.com"),
                       r.property_dependencies.__setitem__("member", [])))),
    ("grants-replaced-with-resource", "not replaced with", edit(
        T.T_SUB_IAM, "batchline-completions-push-agent-subscriber", lambda r, rs: r.replace_with.clear())),
    ("grants-replaced-with-resource", "not replaced with", edit(
        T.T_RUN_IAM, "fn-reconcile-invoker-scheduler", lambda r, rs: r.replace_with.clear())),
    # item 1
    ("alerts-first-run", "without waiting", edit(
        T.T_ALERT, "monitoring-dml-rate-limited",
        lambda r, rs: r.dependencies.remove(_urn(rs, T.T_SLEEP, "monitoring-metrics-settle")))),
    ("alerts-first-run", "only one condition", inputs(T.T_ALERT, "monitoring-consolidation-failed",
                                                      lambda i: i.update(conditions=i["conditions"] * 2))),
    ("alerts-first-run", "notification rate limit", inputs(T.T_ALERT, "monitoring-staging-gap",
                                                           lambda i: i["alertStrategy"].pop("notificationRateLimit"))),
    # item 7
    ("dead-letter-alert", "page nobody", inputs(T.T_ALERT, "monitoring-dead-letter-messages",
                                                lambda i: i.update(conditions=i["conditions"][1:]))),
    # issue 18 item 1: Cloud Run's 429s at the cap must not exhaust a healthy message's attempts
    ("delivery-fits-caps", "needs 20 attempts, 10 allowed", inputs(T.T_FUNCTION, "fn-worker", lambda i: i[
        "serviceConfig"].update(maxInstanceCount=1))),
    ("delivery-fits-caps", "needs 3 attempts, 2 allowed", inputs(T.T_SUB, "batchline-completions-push", lambda i: i[
        "deadLetterPolicy"].update(maxDeliveryAttempts=2))),
    ("delivery-fits-caps", "no capacity plan", inputs(T.T_SUB, "batchline-work-push",
                                                      lambda i: i["labels"].pop("batchline-burst"))),
    ("dead-letter-alert", "backlog", inputs(T.T_ALERT, "monitoring-dead-letter-messages", lambda i: i["conditions"][0][
        "conditionThreshold"].update(filter='metric.type="pubsub.googleapis.com/subscription/num_undelivered_messages"'
                                            ' AND resource.labels.subscription_id="batchline-work-dlq-pull"'))),
]


def _broken(run: StackRun, mutate: Callable[[list[Resource]], None]) -> StackRun:
    resources = copy.deepcopy(run.resources)
    mutate(resources)
    return StackRun(run.stack, run.config, resources, run.outputs)


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
@pytest.mark.parametrize("name", VIEW_RULES)
def test_rule_passes_on_every_stack(any_run, name, preview):
    assert rules.RULES[name].check(stack_view(any_run, preview=preview)) == []


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
@pytest.mark.parametrize("name, reason, mutate", BREAKAGES, ids=[f"{n}:{r}" for n, r, _ in BREAKAGES])
def test_rule_detects_breakage(prod_run, name, reason, mutate, preview):
    findings = rules.RULES[name].check(stack_view(_broken(prod_run, mutate), preview=preview))
    assert any(reason in f.reason or reason in str(f) for f in findings), findings


def test_every_rule_has_a_breakage_test():
    assert {n for n, _, _ in BREAKAGES} == set(VIEW_RULES)


def test_preview_view_hides_computed_values(prod_run):
    """The preview emulation is not vacuous: e-mails, URLs and ids are unknown, literals are not."""
    st = stack_view(prod_run, preview=True)
    work = next(v for v in st.of_type(T.T_SUB) if v.name == "batchline-work-push")
    assert work.get("pushConfig", "pushEndpoint") is UNKNOWN
    assert work.get("pushConfig", "oidcToken", "serviceAccountEmail") is UNKNOWN
    assert work.get("topic") is UNKNOWN
    assert work.get("ackDeadlineSeconds") == 180 and work.get("name") == "batchline-work-push"
    fn = next(v for v in st.of_type(T.T_FUNCTION) if v.name == "fn-worker")
    assert fn.get("serviceConfig", "serviceAccountEmail") is UNKNOWN
    assert fn.get("serviceConfig", "ingressSettings") == "ALLOW_INTERNAL_ONLY"


def test_security_rules_are_mandatory():
    mandatory = {n for n, r in rules.RULES.items() if r.mandatory}
    assert {"no-public-access", "function-ingress", "authenticated-calls", "least-privilege",
            "build-service-account", "operator-grants", "delivery-fits-caps"} <= mandatory
    assert "push-ack-deadline" not in mandatory


def test_a_rule_name_given_twice_is_refused():
    """The catalogue is built from each module's list: two rules of one name would shadow one."""
    from infra.rules.engine import catalogue

    r = rules.RULES["no-public-access"]
    assert catalogue((r,), (rules.RULES["oidc"],)) == {"no-public-access": r, "oidc": rules.RULES["oidc"]}
    with pytest.raises(ValueError, match="'no-public-access' is defined twice"):
        catalogue((r,), (r,))
