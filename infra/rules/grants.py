"""Rules on who is granted what: nothing public or primitive, our accounts exactly what infra/access.py
declares (ACCESS), operators exactly OPERATOR_ACCESS and never an invoker role, the Pub/Sub service
agent named as the API reports it, every grant replaced with the resource it is on.

An operator grant (issue 8) is one whose member is neither one of our service accounts nor the Pub/Sub
service agent (a member from `projects.ServiceIdentity`): a literal `user:`, `group:` or
`serviceAccount:` member from stack config, known at preview too. Operators act only through the
control topic."""

from __future__ import annotations

from infra.access import ACCESS, INVOKER_ROLES, OPERATOR_ACCESS, PRIMITIVE_ROLES, PUBLIC_MEMBERS
from infra.resource_types import GRANTS, RESOURCE_GRANTS, T_FUNCTION, T_IDENTITY
from infra.rules.engine import Finding, Needs, rule
from infra.rules.reading import declared_grant, declared_set, granted_set, grants, identity, operator_grants_of
from infra.view import Stack, walk


@rule("no-public-access", mandatory=True)
def no_public_access(stack: Stack) -> list[Finding]:
    """No allUsers / allAuthenticatedUsers anywhere, no primitive roles on any grant."""
    out = []
    for v in stack.views:
        if any(isinstance(x, str) and x in PUBLIC_MEMBERS for x in walk(dict(v.props))):
            out.append(Finding("no-public-access", v.name, "public member in its inputs"))
        if v.type in GRANTS and v.get("role") in PRIMITIVE_ROLES:
            out.append(Finding("no-public-access", v.name, f"primitive role {v.get('role')}"))
    return out


@rule("least-privilege", mandatory=True)
def least_privilege(stack: Stack) -> list[Finding]:
    """Every grant to one of our service accounts is one `infra/access.py` declares: project roles,
    dataset roles by dataset kind, publisher by topic key, subscriber on the dead-letter pull
    subscription of a declared topic key, invoker by function."""
    out = []
    for g in grants(stack):
        who = identity(stack, g)
        if who is None:
            continue  # not one of our accounts (the Pub/Sub service agent, operators): other rules
        ok, scope = declared_grant(stack, g, ACCESS[who])
        if not ok:
            out.append(Finding("least-privilege", g.name, f"{who} may not hold {g.get('role')} on {scope}"))
    return out


@rule("declared-grants-exist", mandatory=False)
def declared_grants_exist(stack: Stack) -> list[Finding]:
    """Every grant `infra/access.py` declares exists: a function without its publisher, subscriber,
    dataset or project role, or a caller without its invoker grant, fails with 403 in production."""
    if not stack.of_type(T_FUNCTION):
        return []
    granted = {(who, *x) for g in grants(stack) if (who := identity(stack, g)) is not None
               for x in granted_set(stack, g)}
    want = {(who, *x) for who, a in ACCESS.items() for x in declared_set(a)}
    return [Finding("declared-grants-exist", who, f"missing {role} on {kind} {key}".rstrip())
            for who, kind, key, role in sorted(want - granted)]


@rule("operator-grants", mandatory=True)
def operator_grants(stack: Stack) -> list[Finding]:
    """Operators hold only what OPERATOR_ACCESS lists (publisher on the control topic, subscriber on
    the dead-letter pull subscriptions, read-only Firestore and BigQuery) and no invoker role: operator
    actions reach the coordinator through the control topic, never a new invoker."""
    out = []
    for member, g in operator_grants_of(stack):
        role = g.get("role")
        if role in INVOKER_ROLES:
            out.append(Finding("operator-grants", g.name, f"{member} may not hold {role}: no new invoker, "
                                                          f"operators publish to the control topic"))
            continue
        ok, scope = declared_grant(stack, g, OPERATOR_ACCESS)
        if not ok:
            out.append(Finding("operator-grants", g.name, f"operator {member} may not hold {role} on {scope}"))
    return out


@rule("operator-grants-complete", mandatory=False)
def operator_grants_complete(stack: Stack) -> list[Finding]:
    """Every operator holds every grant OPERATOR_ACCESS lists: one without its subscriber, viewer or
    publisher role gets 403 from the CLI."""
    held: dict[str, set[tuple[str, str, str]]] = {}
    for member, g in operator_grants_of(stack):
        held.setdefault(member, set()).update(granted_set(stack, g))
    want = declared_set(OPERATOR_ACCESS)
    return [Finding("operator-grants-complete", member, f"missing {role} on {kind} {key}".rstrip())
            for member, have in sorted(held.items()) for kind, key, role in sorted(want - have)]


@rule("pubsub-agent-identity", mandatory=False)
def pubsub_agent_identity(stack: Stack) -> list[Finding]:
    """Grants to the Pub/Sub service agent name it through projects.ServiceIdentity, not a string
    assembled from the project number."""
    out = []
    for g in grants(stack):
        member = g.get("member")
        from_identity = stack.deps_of(g, "member", T_IDENTITY)
        if isinstance(member, str) and "gcp-sa-pubsub" in member and not from_identity:
            out.append(Finding("pubsub-agent-identity", g.name, "Pub/Sub agent member not from ServiceIdentity"))
    return out


@rule("grants-replaced-with-resource", mandatory=False, needs=Needs.REPLACE_WITH)
def grants_replaced_with_resource(stack: Stack) -> list[Finding]:
    """A grant on a topic, subscription, dataset, service or service account is replaced with that
    resource (replace_with): one recreated under the same name starts without bindings, and the
    grant would show no diff."""
    out = []
    for g in (v for v in stack.views if v.type in RESOURCE_GRANTS):
        targets = set(g.deps.get(RESOURCE_GRANTS[g.type], ()))
        if g.replace_with is not None and not targets <= set(g.replace_with):
            out.append(Finding("grants-replaced-with-resource", g.name, "not replaced with the resource it grants on"))
    return out


RULES = (no_public_access, least_privilege, declared_grants_exist, operator_grants, operator_grants_complete,
         pubsub_agent_identity, grants_replaced_with_resource)
