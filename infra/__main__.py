"""Pulumi entry point (`main: infra/` in Pulumi.yaml). Pulumi runs this file with `infra/` on
sys.path; the repository root is added so `infra` and the shared `batchline` package import as
packages."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from infra.program import main  # noqa: E402

main()
