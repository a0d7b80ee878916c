"""Flows (batchline/flows/) talk to GCP only through adapters (issue 16): none imports google.*, so
every Firestore, BigQuery and Pub/Sub call sits in batchline/adapters/, where the emulator tests and
the SQL census look for it."""

from __future__ import annotations

import ast
from pathlib import Path

import batchline

FLOWS = Path(batchline.__file__).parent / "flows"
# coordinator.py is being split into flows of its own (issue 16); its one query moves with that split.
NOT_YET = {"coordinator.py"}


def google_imports(source: str) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.split(".")[0] == "google"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "google":
            names.append(node.module)
    return names


def test_no_flow_imports_google():
    found = {p.name: google_imports(p.read_text()) for p in sorted(FLOWS.glob("*.py")) if p.name not in NOT_YET}
    assert found and not {name: imports for name, imports in found.items() if imports}


def test_the_scan_sees_both_import_forms():
    assert google_imports("import google.cloud.bigquery\nfrom google.api_core import exceptions as gexc\n"
                          "from batchline.adapters import queries\n") == ["google.cloud.bigquery", "google.api_core"]
