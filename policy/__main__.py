"""batchline's CrossGuard policy pack. Pulumi runs this file in the pack's venv (PulumiPolicy.yaml);
the rules themselves are plain functions in infra/rules.py, shared with the offline harness
(`python -m infra.policies`), and imported from the repository root without pulumi_gcp."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from pulumi_policy import EnforcementLevel, PolicyPack, StackValidationPolicy  # noqa: E402

from infra.pack import PACK_NAME, stack_policies  # noqa: E402

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.ADVISORY,
           policies=stack_policies(StackValidationPolicy, EnforcementLevel))
