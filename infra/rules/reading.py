"""What the rules read off the neutral view that takes more than one lookup: whose a grant is and what it
is on (from the labels of the resource its input came from), which function a call reaches, and, for
the rules that compare with the stack config, the e-mails and URLs the program computed."""

from __future__ import annotations

from infra.access import ACCESS, INVOKER_ROLE, PUBLISHER_ROLE, SUBSCRIBER_ROLE, Access
from infra.labels import DATASET_LABEL, DEAD_LETTER_LABEL, FUNCTION_LABEL, TOPIC_LABEL
from infra.resource_types import (
    GRANTS,
    T_ACCOUNT,
    T_DATASET,
    T_DATASET_IAM,
    T_FUNCTION,
    T_IDENTITY,
    T_PROJECT_IAM,
    T_RUN_IAM,
    T_SUB,
    T_SUB_IAM,
    T_TOPIC,
    T_TOPIC_IAM,
)
from infra.view import Stack, View

# grant type -> (the input naming what it is on, that resource's type, scope kind, the label naming it)
_SCOPES: dict[str, tuple[str, str, str, str]] = {
    T_DATASET_IAM: ("datasetId", T_DATASET, "dataset", DATASET_LABEL),
    T_TOPIC_IAM: ("topic", T_TOPIC, "topic", TOPIC_LABEL),
    T_SUB_IAM: ("subscription", T_SUB, "subscription", DEAD_LETTER_LABEL),
    T_RUN_IAM: ("name", T_FUNCTION, "function", FUNCTION_LABEL),
}


def grants(stack: Stack) -> list[View]:
    return [v for v in stack.views if v.type in GRANTS]


def identity(stack: Stack, grant: View) -> str | None:
    """Which of our identities (ACCESS key) a grant's member is, from the account it came from."""
    for account in stack.deps_of(grant, "member", T_ACCOUNT):
        account_id = account.get("accountId")
        if isinstance(account_id, str):
            return next((who for who in ACCESS if account_id.endswith(f"-{who}")), None)
    return None


def operator_grants_of(stack: Stack) -> list[tuple[str, View]]:
    """(member, grant) of every grant to someone who is not ours and not the Pub/Sub service agent."""
    return [(str(g.get("member")), g) for g in grants(stack)
            if identity(stack, g) is None and not stack.deps_of(g, "member", T_IDENTITY)]


def target_function(stack: Stack, view: View, prop: str) -> View | None:
    """The function of this stack whose output the input `prop` of `view` came from (a call's target)."""
    found = stack.deps_of(view, prop, T_FUNCTION)
    return found[0] if found else None


def declared_grant(stack: Stack, g: View, access: Access) -> tuple[bool, str]:
    """Whether `access` declares grant `g` (role on the resource it is on), and that scope in words."""
    role = g.get("role")
    if g.type == T_PROJECT_IAM:
        return role in access.project_roles, "the project"
    if g.type not in _SCOPES:
        return False, g.get("serviceAccountId") or "a service account"
    prop, type_, kind, label = _SCOPES[g.type]
    on = stack.deps_of(g, prop, type_)
    keys = {v.label(label) for v in on}
    if kind == "dataset":
        return any((k, role) in access.dataset_roles for k in keys), f"dataset {sorted(map(str, keys))}"
    if kind == "topic":
        return role == PUBLISHER_ROLE and any(k in access.publishes_to for k in keys), f"topic {sorted(map(str, keys))}"
    if kind == "subscription":  # only the dead-letter pull subscriptions carry DEAD_LETTER_LABEL
        names = sorted(str(s.get("name")) for s in on)
        return (role == SUBSCRIBER_ROLE and any(k in access.reads_dead_letters for k in keys - {None}),
                f"subscription {names}")
    return role == INVOKER_ROLE and any(fn in access.invokes for fn in keys), f"function {sorted(map(str, keys))}"


def declared_set(access: Access) -> set[tuple[str, str, str]]:
    """(scope kind, scope key, role) of every grant `access` declares."""
    return ({("project", "", r) for r in access.project_roles}
            | {("dataset", k, r) for k, r in access.dataset_roles}
            | {("topic", t, PUBLISHER_ROLE) for t in access.publishes_to}
            | {("subscription", t, SUBSCRIBER_ROLE) for t in access.reads_dead_letters}
            | {("function", f, INVOKER_ROLE) for f in access.invokes})


def granted_set(stack: Stack, g: View) -> set[tuple[str, str, str]]:
    """(scope kind, scope key, role) of grant `g`, scope keys read from the labels."""
    role = g.get("role")
    if not isinstance(role, str):
        return set()
    if g.type == T_PROJECT_IAM:
        return {("project", "", role)}
    if g.type not in _SCOPES:
        return set()
    prop, type_, kind, label = _SCOPES[g.type]
    return {(kind, str(d.label(label)), role) for d in stack.deps_of(g, prop, type_)}


# --- what the program computed (offline only: the rules that compare with the stack config) --------
def last_part(ref: str | None) -> str | None:
    """'projects/p/topics/t' -> 't' (a topic or function named by its id)."""
    return ref.rsplit("/", 1)[-1] if ref else None


def function_of(v: View) -> str | None:
    return (v.props.get("labels") or {}).get(FUNCTION_LABEL)


def account_email(stack: Stack, who: str) -> str | None:
    for a in stack.of_type(T_ACCOUNT):
        if a.props.get("accountId", "").endswith(f"-{who}"):
            return a.outputs.get("email")
    return None


def function_uris(stack: Stack) -> dict[str, str | None]:
    """URL -> function name of every function of the stack."""
    return {(f.outputs.get("serviceConfig") or {}).get("uri"): function_of(f) for f in stack.of_type(T_FUNCTION)}


def split_endpoint(endpoint: str, uris: dict[str, str | None]) -> tuple[str | None, str | None]:
    """(function, path) a URL calls, or (None, None) when it is no function of the stack."""
    for uri, fn in uris.items():
        if uri and endpoint.startswith(uri):
            return fn, endpoint[len(uri):] or "/"
    return None, None
