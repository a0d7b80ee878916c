"""The policy pack in its own pinned environment, end to end: a throwaway venv gets exactly
policy/requirements.txt (pulumi-policy and its protobuf/grpcio pins, never the main venv's
packages), then policy/selfcheck.py loads policy/__main__.py with the real pulumi_policy and runs
every policy on the stack's resources as `pulumi preview` shows them, through pulumi_policy's own
unknown-checking proxy. Clean stacks report nothing; a broken copy is reported by the right policy.
(~10-15 s with a warm pip cache; it needs the package index, like `make install`.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra import pack
from infra.harness import stack_view

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pack_python(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("policy-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                    str(ROOT / "policy" / "requirements.txt")], check=True, capture_output=True)
    return python


def _selfcheck(python: Path, records: list[dict], tmp_path: Path) -> tuple[int, dict]:
    views = tmp_path / "views.json"
    views.write_text(json.dumps(records, default=str))
    out = subprocess.run([str(python), str(ROOT / "policy" / "selfcheck.py"), str(views)], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def test_pack_venv_has_its_own_pins(pack_python):
    code = "import pulumi_policy, google.protobuf as p; print(p.__version__)"
    out = subprocess.run([str(pack_python), "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip()  # protobuf as pulumi-policy pins it, whatever the main venv has


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_real_pack_passes_clean_stacks_at_preview(pack_python, tmp_path, stack, dev_run, prod_run):
    run = {"dev": dev_run, "prod": prod_run}[stack]
    code, report = _selfcheck(pack_python, pack.to_wire(stack_view(run, preview=True)), tmp_path)
    assert code == 0, report
    names = {k.split(" ")[0] for k in report}
    assert names == {n for n, r in pack.rules.RULES.items() if not r.offline}
    assert "least-privilege (mandatory)" in report and "push-ack-deadline (advisory)" in report


def test_real_pack_reports_a_broken_copy(pack_python, tmp_path, dev_run):
    records = pack.to_wire(stack_view(dev_run, preview=True))
    for r in records:
        if r["name"] == "bq-staging-worker-dataEditor":
            r["props"]["role"] = "roles/bigquery.dataOwner"
        if r["name"] == "batchline-dev-work-push":
            r["props"]["ackDeadlineSeconds"] = 120
    code, report = _selfcheck(pack_python, records, tmp_path)
    assert code == 1
    assert any("worker may not hold roles/bigquery.dataOwner" in m for m in report["least-privilege (mandatory)"])
    assert any("shorter than fn-worker's timeout" in m for m in report["push-ack-deadline (advisory)"])
