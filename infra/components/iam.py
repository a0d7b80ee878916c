"""Service accounts: one per function, one for Pub/Sub push, one for Cloud Scheduler, one that Cloud
Build runs the functions' builds as, and their project-level roles (operators' too).

What each identity may do is declared once, as data, in `infra/access.py` (`ACCESS`,
`OPERATOR_ACCESS`); each grant is made by the component that owns the resource it is on, and
`grantees` is the one list of who those components grant to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra.access import ACCESS, OPERATOR_ACCESS, Access


def operator_slug(member: str) -> str:
    """An operator's member as part of a resource name: `group:ops@x.com` -> `group-ops@x.com`
    (one-to-one: the e-mail has no colon)."""
    return member.replace(":", "-")


@dataclass(frozen=True)
class Grantee:
    """Someone a component grants roles to: `slug` names the grants, `access` says which."""

    slug: str
    member: pulumi.Input[str]
    access: Access


def grantees(members: dict[str, pulumi.Input[str]], operators: tuple[str, ...]) -> list[Grantee]:
    """Our identities among `members` with their ACCESS, then each operator with OPERATOR_ACCESS."""
    return ([Grantee(who, members[who], access) for who, access in ACCESS.items() if who in members]
            + [Grantee(f"operator-{operator_slug(m)}", m, OPERATOR_ACCESS) for m in operators])


@dataclass
class ServiceAccountsArgs:
    project: str
    prefix: str  # the stack's topic prefix, shortened into each account id
    operators: tuple[str, ...] = field(default_factory=tuple)


class ServiceAccounts(pulumi.ComponentResource):
    accounts: dict[str, gcp.serviceaccount.Account]
    emails: dict[str, pulumi.Output[str]]
    members: dict[str, pulumi.Output[str]]  # `serviceAccount:<email>` of each identity
    grants_of: dict[str, list[gcp.projects.IAMMember]]  # each identity's project roles

    def __init__(self, name: str, args: ServiceAccountsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:ServiceAccounts", name, None, opts)
        self._name, self._args = name, args
        self._create_accounts()
        self.grants_of = {who: self._project_roles(who, self.members[who], access.project_roles)
                          for who, access in ACCESS.items()}
        # operators' project roles (OPERATOR_ACCESS): the ones without a narrower scope
        self.operator_grants = [g for m in args.operators for g in self._project_roles(
            f"operator-{operator_slug(m)}", m, OPERATOR_ACCESS.project_roles)]
        self.register_outputs({"emails": self.emails})

    def _create_accounts(self) -> None:
        prefix = self._args.prefix
        self.accounts = {}
        for who in ACCESS:
            # account ids: 6-30 chars, so the stack prefix is shortened
            account_id = f"{prefix[:18]}-{who}"[:30].strip("-")
            self.accounts[who] = gcp.serviceaccount.Account(
                f"{self._name}-{who}", project=self._args.project, account_id=account_id,
                display_name=f"batchline {who} ({prefix})", opts=pulumi.ResourceOptions(parent=self))
        self.emails = {w: a.email for w, a in self.accounts.items()}
        self.members = {w: a.email.apply(lambda e: f"serviceAccount:{e}") for w, a in self.accounts.items()}

    def _project_roles(self, slug: str, member: pulumi.Input[str],
                       roles: tuple[str, ...]) -> list[gcp.projects.IAMMember]:
        return [gcp.projects.IAMMember(f"{self._name}-{slug}-{role.split('/')[-1]}", project=self._args.project,
                                       role=role, member=member, opts=pulumi.ResourceOptions(parent=self))
                for role in roles]
