"""Run every rule (infra/rules/) on what a stack's program registers, offline:

    python -m infra.policies --stack dev
    python -m infra.policies --stack prod --secret slack_token=placeholder
    python -m infra.policies --stack prod --policy alerts --policy oidc

The real program runs under Pulumi's mocks (infra/harness.py: no credentials, no Pulumi CLI) with the
stack file's config, so besides the rules the CrossGuard pack runs, this runs the rules that compare
the deployment with its config and outputs, which a pack cannot see. Exit status 0 = no findings,
1 = findings (each printed with the resource and the reason), 2 = invalid config.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from infra.rules import RULES, check


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m infra.policies", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    ap.add_argument("--secret", action="append", default=[], metavar="KEY=VALUE",
                    help="a secret config value not in the stack file (e.g. slack_token=placeholder)")
    ap.add_argument("--policy", action="append", choices=sorted(RULES), help="run only these rules")
    ap.add_argument("--export-views", metavar="PATH",
                    help="also write the resources as a policy pack sees them (for policy/selfcheck.py)")
    ap.add_argument("--preview", action="store_true", help="with --export-views: as preview shows them")
    return ap


def main(argv: list[str] | None = None) -> int:
    from infra.config import ConfigError
    from infra.harness import run_stack, stack_view

    args = _parser().parse_args(argv)
    secrets = dict(s.split("=", 1) for s in args.secret)
    try:
        run = run_stack(args.stack, secrets=secrets)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.export_views:
        from infra.pack import to_wire

        Path(args.export_views).write_text(json.dumps(to_wire(stack_view(run, preview=args.preview)), default=str))
    findings = check(stack_view(run), args.policy)
    for f in findings:
        print(f)
    print(f"{args.stack}: {len(run.resources)} resources, {len(args.policy or RULES)} policies, "
          f"{len(findings)} violation(s)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
