"""The documented deployer roles cover every resource type the program creates (issue 7 item 3):
infra/deployer.py names, for each type, the permission creating it (or setting its IAM policy)
takes and the role granting it; docs/deploy.md lists exactly the same roles."""

from __future__ import annotations

import re
from pathlib import Path

from infra import deployer

ROOT = Path(__file__).resolve().parents[2]


def documented_roles() -> list[str]:
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = text.split("<!-- deployer-roles:begin -->")[1].split("<!-- deployer-roles:end -->")[0]
    return re.findall(r"^- `(roles/[\w.]+)`$", block, re.MULTILINE)


def test_docs_list_exactly_the_deployer_roles():
    assert documented_roles() == list(deployer.DEPLOYER_ROLES)


def test_every_created_resource_type_is_covered(any_run):
    created = {r.type for r in any_run.resources if r.custom}
    uncovered = created - set(deployer.NEEDS) - set(deployer.LOCAL_TYPES)
    assert not uncovered, f"no deployer role named for {sorted(uncovered)}"


def test_every_needed_role_is_in_the_list():
    for type_, (permission, role) in deployer.NEEDS.items():
        assert role in deployer.DEPLOYER_ROLES, type_
        assert re.fullmatch(r"[a-z]+\.[a-zA-Z]+\.[a-zA-Z]+", permission), permission


def test_per_resource_grants_need_set_iam_policy_on_that_resource(any_run):
    """The gap the review found: a grant on a resource takes that resource's setIamPolicy."""
    grants = {r.type for r in any_run.resources if r.custom and re.search(r"(?i)iammember", r.type)}
    assert grants
    for type_ in grants:
        assert deployer.NEEDS[type_][0].endswith(".setIamPolicy"), type_


def test_a_new_resource_type_without_a_role_fails(dev_run):
    """Break a copy: a resource type nobody named a role for."""
    created = {r.type for r in dev_run.resources if r.custom} | {"gcp:kms/cryptoKey:CryptoKey"}
    assert created - set(deployer.NEEDS) - set(deployer.LOCAL_TYPES) == {"gcp:kms/cryptoKey:CryptoKey"}
