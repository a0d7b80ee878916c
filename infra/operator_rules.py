"""Rules on the grants to operators (`batchline:operators`, issue 8), registered in `infra.rules.RULES`
like the others (imported at the end of infra/rules.py, so the pack and the offline runner get them).

An operator grant is one whose member is neither one of our service accounts (`rules.identity`) nor
the Pub/Sub service agent (a member from `projects.ServiceIdentity`): a literal `user:`, `group:` or
`serviceAccount:` member from stack config, known at preview too. Operators act only through the
control topic: they hold exactly `infra/access.py`'s OPERATOR_ACCESS and never invoke a function.
"""

from __future__ import annotations

from infra.access import INVOKER_ROLE, OPERATOR_ACCESS
from infra.grant_scopes import declared_grant, declared_set, granted_set
from infra.resource_types import GRANTS, T_IDENTITY
from infra.rules import identity, rule
from infra.view import Finding, Stack, View

INVOKER_ROLES = (INVOKER_ROLE, "roles/cloudfunctions.invoker")


def operator_grants_of(stack: Stack) -> list[tuple[str, View]]:
    """(member, grant) of every grant to someone who is not ours and not the Pub/Sub service agent."""
    return [(str(g.get("member")), g) for g in stack.views if g.type in GRANTS
            and identity(stack, g) is None and not stack.deps_of(g, "member", T_IDENTITY)]


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
