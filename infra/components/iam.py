"""Service accounts: one per function, one for Pub/Sub push, one for Cloud Scheduler, one that Cloud
Build runs the functions' builds as.

What each identity may do is declared once, as data, in `infra/access.py` (`ACCESS`).
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.access import ACCESS, BUILD, BUILD_ROLES, INVOKER_ROLE, OPERATOR_ACCESS, PUSH, SCHEDULER, Access

__all__ = ["ACCESS", "BUILD", "BUILD_ROLES", "INVOKER_ROLE", "PUSH", "SCHEDULER", "Access", "ServiceAccounts",
           "operator_slug"]


def operator_slug(member: str) -> str:
    """An operator's member as part of a resource name: `group:ops@x.com` -> `group-ops@x.com`
    (one-to-one: the e-mail has no colon)."""
    return member.replace(":", "-")


class ServiceAccounts(pulumi.ComponentResource):
    def __init__(self, name: str, project: str, prefix: str, operators: tuple[str, ...] = (),
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:ServiceAccounts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.accounts: dict[str, gcp.serviceaccount.Account] = {}
        for who in ACCESS:
            # account ids: 6-30 chars, so the stack prefix is shortened
            account_id = f"{prefix[:18]}-{who}"[:30].strip("-")
            self.accounts[who] = gcp.serviceaccount.Account(
                f"{name}-{who}", project=project, account_id=account_id,
                display_name=f"batchline {who} ({prefix})", opts=child)
        self.emails: dict[str, pulumi.Output[str]] = {w: a.email for w, a in self.accounts.items()}
        self.members: dict[str, pulumi.Output[str]] = {
            w: a.email.apply(lambda e: f"serviceAccount:{e}") for w, a in self.accounts.items()}
        self.grants_of: dict[str, list[gcp.projects.IAMMember]] = {
            who: [gcp.projects.IAMMember(f"{name}-{who}-{role.split('/')[-1]}", project=project, role=role,
                                         member=self.members[who], opts=child)
                  for role in access.project_roles]
            for who, access in ACCESS.items()}
        # operators' project roles (OPERATOR_ACCESS): the ones without a narrower scope
        self.operator_grants = [
            gcp.projects.IAMMember(f"{name}-operator-{operator_slug(m)}-{role.split('/')[-1]}", project=project,
                                   role=role, member=m, opts=child)
            for m in operators for role in OPERATOR_ACCESS.project_roles]
        self.project_grants = [g for grants in self.grants_of.values() for g in grants] + self.operator_grants
        self.register_outputs({"emails": self.emails})
