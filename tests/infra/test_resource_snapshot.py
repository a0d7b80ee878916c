"""The resources dev, prod and prod in emergency register are pinned: type, name, URN (so the parent
chain), every input, which inputs came from which resource, depends_on and replace_with, and the stack
outputs. A refactor of infra/ must leave them exactly as they were (a changed URN or input is a
replacement or an update at the next `pulumi up`); a deliberate change rewrites the snapshot:

    .venv/bin/python tests/infra/test_resource_snapshot.py --write

and the diff of tests/infra/snapshots/*.json is what `pulumi preview` would show.

Two things are normalised so that the snapshot pins infra, not the shared package: the source
archives' content hash (in the archive object's name and wherever a function names that object) and
their file list under batchline/ (tests/infra/test_stacks.py test_source_archive_contents checks what
goes in)."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
ARCHIVE_NAME = re.compile(r"^(worker|coordinator|reconcile)/[0-9a-f]{16}\.zip$")


def _plain(value: Any) -> Any:
    """Inputs as JSON: a source archive as its files outside batchline/ plus one entry for the package,
    an archive's name without its content hash."""
    if hasattr(value, "assets") and isinstance(value.assets, dict):
        files = sorted(k for k in value.assets if not k.startswith("batchline/"))
        return {"archive": files + ["batchline/..."]}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str) and ARCHIVE_NAME.match(value):
        return value.split("/")[0] + "/<content hash>.zip"
    return value


def snapshot(run) -> dict[str, Any]:
    resources = []
    for r in run.resources:
        inputs = _plain(copy.copy(r.inputs))
        resources.append({
            "type": r.type, "name": r.name, "urn": r.urn, "parent": r.parent, "inputs": inputs,
            "property_dependencies": {k: sorted(v) for k, v in sorted(r.property_dependencies.items()) if v},
            "dependencies": sorted(r.dependencies), "replace_with": sorted(r.replace_with)})
    resources.sort(key=lambda x: x["urn"])
    return {"resources": resources, "outputs": run.outputs}


def _as_json(snap: dict[str, Any]) -> str:
    return json.dumps(snap, indent=1, sort_keys=True, default=str) + "\n"


def _path(name: str) -> Path:
    return SNAPSHOTS / f"{name}.json"


@pytest.mark.parametrize("name", ["dev", "prod", "prod-emergency"])
def test_registered_resources_equal_the_snapshot(name, dev_run, prod_run, prod_emergency_run):
    run = {"dev": dev_run, "prod": prod_run, "prod-emergency": prod_emergency_run}[name]
    want = json.loads(_path(name).read_text())
    got = json.loads(_as_json(snapshot(run)))
    assert [r["urn"] for r in got["resources"]] == [r["urn"] for r in want["resources"]]
    for g, w in zip(got["resources"], want["resources"], strict=True):
        assert g == w, g["urn"]
    assert got["outputs"] == want["outputs"]


def test_the_snapshot_sees_an_input_change(prod_run):
    """Not vacuous: one changed nested input of one resource makes the snapshots differ."""
    broken = copy.deepcopy(prod_run)
    fn = next(r for r in broken.resources if r.name == "fn-worker")
    fn.inputs["serviceConfig"]["timeoutSeconds"] += 1
    assert _as_json(snapshot(broken)) != _path("prod").read_text()


def _write() -> None:
    sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]
    from conftest import PROD_SECRETS

    from infra import harness

    raw = harness.load_stack_config("prod")
    runs = {"dev": harness.run_stack("dev"), "prod": harness.run_stack("prod", secrets=PROD_SECRETS),
            "prod-emergency": harness.run_program({**copy.deepcopy(raw), "emergency": True}, stack="prod",
                                                  secrets=PROD_SECRETS)}
    SNAPSHOTS.mkdir(exist_ok=True)
    for name, run in runs.items():
        _path(name).write_text(_as_json(snapshot(run)))
        print(f"wrote {_path(name)}: {len(run.resources)} resources")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {sys.argv[0]} --write")
    _write()
