"""Which grant is on what, for the rules (`infra.rules`, `infra.operator_rules`): a grant's scope
(project, dataset kind, topic key, dead-letter topic key, function) read from the labels of the
resource its input depends on, and whether an `Access` declares it. Pure Python, no Pulumi."""

from __future__ import annotations

from infra.access import DATASET_LABEL, DEAD_LETTER_LABEL, FUNCTION_LABEL, INVOKER_ROLE, TOPIC_LABEL, Access
from infra.resource_types import (
    T_DATASET,
    T_DATASET_IAM,
    T_FUNCTION,
    T_PROJECT_IAM,
    T_RUN_IAM,
    T_SUB,
    T_SUB_IAM,
    T_TOPIC,
    T_TOPIC_IAM,
)
from infra.view import Stack, View


def declared_grant(stack: Stack, g: View, access: Access) -> tuple[bool, str]:
    """Whether `access` declares grant `g` (role on the resource it is on), and that scope in words."""
    role = g.get("role")
    if g.type == T_PROJECT_IAM:
        return role in access.project_roles, "the project"
    if g.type == T_DATASET_IAM:
        kinds = {d.label(DATASET_LABEL) for d in stack.deps_of(g, "datasetId", T_DATASET)}
        return any((k, role) in access.dataset_roles for k in kinds), f"dataset {sorted(map(str, kinds))}"
    if g.type == T_TOPIC_IAM:
        keys = {t.label(TOPIC_LABEL) for t in stack.deps_of(g, "topic", T_TOPIC)}
        return (role == "roles/pubsub.publisher" and any(k in access.publishes_to for k in keys),
                f"topic {sorted(map(str, keys))}")
    if g.type == T_SUB_IAM:  # only the dead-letter pull subscriptions carry DEAD_LETTER_LABEL
        keys = {s.label(DEAD_LETTER_LABEL) for s in stack.deps_of(g, "subscription", T_SUB)} - {None}
        names = sorted(str(s.get("name")) for s in stack.deps_of(g, "subscription", T_SUB))
        return (role == "roles/pubsub.subscriber" and any(k in access.reads_dead_letters for k in keys),
                f"subscription {names}")
    if g.type == T_RUN_IAM:
        fns = {f.label(FUNCTION_LABEL) for f in stack.deps_of(g, "name", T_FUNCTION)}
        return role == INVOKER_ROLE and any(fn in access.invokes for fn in fns), f"function {sorted(map(str, fns))}"
    return False, g.get("serviceAccountId") or "a service account"


def declared_set(access: Access) -> set[tuple[str, str, str]]:
    """(scope kind, scope key, role) of every grant `access` declares."""
    return ({("project", "", r) for r in access.project_roles}
            | {("dataset", k, r) for k, r in access.dataset_roles}
            | {("topic", t, "roles/pubsub.publisher") for t in access.publishes_to}
            | {("subscription", t, "roles/pubsub.subscriber") for t in access.reads_dead_letters}
            | {("function", f, INVOKER_ROLE) for f in access.invokes})


def granted_set(stack: Stack, g: View) -> set[tuple[str, str, str]]:
    """(scope kind, scope key, role) of grant `g`, scope keys read from the labels."""
    role = g.get("role")
    if not isinstance(role, str):
        return set()
    if g.type == T_PROJECT_IAM:
        return {("project", "", role)}
    for grant_type, prop, type_, kind, label in (
            (T_DATASET_IAM, "datasetId", T_DATASET, "dataset", DATASET_LABEL),
            (T_TOPIC_IAM, "topic", T_TOPIC, "topic", TOPIC_LABEL),
            (T_SUB_IAM, "subscription", T_SUB, "subscription", DEAD_LETTER_LABEL),
            (T_RUN_IAM, "name", T_FUNCTION, "function", FUNCTION_LABEL)):
        if g.type == grant_type:
            return {(kind, str(d.label(label)), role) for d in stack.deps_of(g, prop, type_)}
    return set()
