"""The CrossGuard pack's wiring, checked without pulumi_policy (it lives in the pack's own venv):
the files Pulumi reads, that the shared modules import nothing the pack venv lacks, and the pack's
path (pulumi_policy's proxied props with unknown sentinels -> view -> rules -> report_violation) with
stand-ins shaped like pulumi_policy's. The same path with the real pulumi_policy is
policy/selfcheck.py (run by hand in the pack venv: docs/deploy.md)."""

from __future__ import annotations

import ast
import copy
import enum
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from infra import pack, rules
from infra.harness import stack_view
from infra.view import UNKNOWN

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policy"


def test_pack_files_are_wired():
    spec = yaml.safe_load((POLICY / "PulumiPolicy.yaml").read_text())
    assert spec["runtime"]["name"] == "python"
    assert spec["runtime"]["options"]["virtualenv"] == "venv"
    reqs = (POLICY / "requirements.txt").read_text().split()
    assert any(r.startswith("pulumi-policy==") for r in reqs)
    main = ast.parse((POLICY / "__main__.py").read_text())
    imported = {(n.module, a.name) for n in ast.walk(main) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {("pulumi_policy", "PolicyPack"), ("pulumi_policy", "StackValidationPolicy"),
            ("infra.pack", "stack_policies")} <= imported
    assert "policy/venv/" in (ROOT / ".gitignore").read_text().split()


def test_shared_modules_need_only_the_standard_library():
    """What the pack imports from the repository must load without pulumi, pulumi_gcp, pulumi_policy
    or google-cloud (the pack venv has only pulumi-policy and its pins): `-S` leaves out every
    installed package, so an import of one fails here."""
    code = ("import sys, infra.pack, infra.rules, infra.view, infra.limits, infra.access; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pulumi', 'pulumi_gcp', 'pulumi_policy', 'google', 'pydantic', 'yaml')))")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout


# --- stand-ins shaped like pulumi_policy's ---------------------------------------------------------
class DictProxy(Mapping):
    """Like pulumi_policy.proxy._DictProxy: raw dict behind '__target', unknowns raise on access."""

    def __init__(self, target: dict) -> None:
        self._t = {k: proxy(v) for k, v in target.items()}

    def __getitem__(self, key):
        if key == "__target":
            return self._t
        value = self._t[key]
        if isinstance(value, str) and value in pack.UNKNOWN_SENTINELS:
            raise LookupError(f"unknown value at {key}")
        return value

    def __iter__(self):
        return iter(self._t)

    def __len__(self):
        return len(self._t)


class ListProxy(Sequence):
    def __init__(self, target: list) -> None:
        self._t = [proxy(v) for v in target]

    def __getitem__(self, key):
        return self._t if key == "__target" else self._t[key]

    def __len__(self):
        return len(self._t)


def proxy(value: Any) -> Any:
    if isinstance(value, dict):
        return DictProxy(value)
    if isinstance(value, list):
        return ListProxy(value)
    return value


def policy_resources(records: list[dict]) -> list[SimpleNamespace]:
    by_urn = {r["urn"]: SimpleNamespace(resource_type=r["type"], name=r["name"], urn=r["urn"],
                                        props=proxy(r["props"]), dependencies=[], property_dependencies={})
              for r in records}
    for r in records:
        res = by_urn[r["urn"]]
        res.dependencies = [by_urn[u] for u in r["dependencies"] if u in by_urn]
        res.property_dependencies = {k: [by_urn[u] for u in v if u in by_urn]
                                     for k, v in r["property_dependencies"].items()}
    return list(by_urn.values())


class Level(enum.Enum):
    ADVISORY = "advisory"
    MANDATORY = "mandatory"


@dataclass
class FakeStackPolicy:
    name: str
    description: str
    validate: Any
    enforcement_level: Level
    reported: list = field(default_factory=list)


def _records(run, preview=True) -> list[dict]:
    return json.loads(json.dumps(pack.to_wire(stack_view(run, preview=preview)), default=str))


def test_pack_view_equals_the_harness_view(dev_run):
    direct = stack_view(dev_run, preview=True)
    via_pack = pack.to_stack(policy_resources(_records(dev_run)))
    work = next(v for v in via_pack.views if v.name == "batchline-dev-work-push")
    assert work.get("pushConfig", "pushEndpoint") is UNKNOWN and work.get("ackDeadlineSeconds") == 150
    assert [v.name for v in via_pack.views] == [v.name for v in direct.views]
    assert {v.urn: v.deps for v in via_pack.views} == {v.urn: dict(v.deps) for v in direct.views}
    assert rules.check(via_pack, offline=False) == []


def test_pack_policies_report_through_report_violation(prod_run):
    policies = pack.stack_policies(FakeStackPolicy, Level)
    assert {p.name for p in policies} == {n for n, r in rules.RULES.items() if not r.offline}
    for p in policies:
        assert p.enforcement_level is (Level.MANDATORY if rules.RULES[p.name].mandatory else Level.ADVISORY)

    def run_pack(records):
        args = SimpleNamespace(resources=policy_resources(records))
        report = {}
        for p in policies:
            p.validate(args, lambda message, urn=None, name=p.name: report.setdefault(name, []).append((message, urn)))
        return report

    records = _records(prod_run)
    assert run_pack(records) == {}
    broken = copy.deepcopy(records)
    grant = next(r for r in broken if r["name"] == "bq-staging-reconcile-dataEditor")
    grant["props"]["role"] = "roles/bigquery.admin"
    report = run_pack(broken)
    # the grant is both one reconcile may not hold and the declared one, now missing
    assert set(report) == {"least-privilege", "declared-grants-exist"}
    (message, urn), = report["least-privilege"]
    assert "reconcile may not hold roles/bigquery.admin" in message and urn == grant["urn"]
