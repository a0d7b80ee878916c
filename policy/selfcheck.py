"""Run the pack as Pulumi would, without Pulumi: in the pack's venv, build real pulumi_policy
PolicyResources (props behind pulumi_policy's unknown-checking proxy) from a file of wire records
(`python -m infra.policies --stack dev --export-views views.json [--preview]` in the main venv),
load policy/__main__.py with PolicyPack captured instead of served, and call every policy's
validate. Prints {"policy": [violation messages]} as JSON; exit 1 if anything was reported.

    policy/venv/bin/python policy/selfcheck.py views.json
"""

import json
import runpy
import sys
from pathlib import Path

import pulumi_policy
from pulumi_policy.policy import PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions, StackValidationArgs
from pulumi_policy.proxy import unknown_checking_proxy

HERE = Path(__file__).resolve().parent


def resources(records):
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    by_urn = {r["urn"]: PolicyResource(r["type"], unknown_checking_proxy(r["props"]), r["urn"], r["name"], opts,
                                       None, None, [], {}) for r in records}
    for r in records:
        res = by_urn[r["urn"]]
        res.dependencies = [by_urn[u] for u in r["dependencies"] if u in by_urn]
        res.property_dependencies = {k: [by_urn[u] for u in v if u in by_urn]
                                     for k, v in r["property_dependencies"].items()}
    return list(by_urn.values())


def main(path: str) -> int:
    captured = {}

    class CapturedPack:
        def __init__(self, name, policies, enforcement_level=None, **_):
            captured.update(name=name, policies=policies)

    pulumi_policy.PolicyPack = CapturedPack
    runpy.run_path(str(HERE / "__main__.py"), run_name="__main__")
    args = StackValidationArgs(resources(json.loads(Path(path).read_text())), {})
    report = {}
    for p in captured["policies"]:
        found = report.setdefault(f"{p.name} ({p.enforcement_level.value})", [])
        p.validate(args, lambda message, urn=None, found=found: found.append(message))
    print(json.dumps(report, indent=1))
    return 1 if any(report.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
