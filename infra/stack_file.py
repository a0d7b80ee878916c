"""A stack's `Pulumi.<stack>.yaml`, read without Pulumi: the offline harness, the policy runner and the
local scheduler (which runs the stack's jobs) all validate the same file with infra.config.load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.config_fields import NAMESPACE

REPO_ROOT = Path(__file__).resolve().parent.parent


def stack_file(stack: str, root: Path = REPO_ROOT) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def load_stack_config(stack: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """The `batchline:` keys of Pulumi.<stack>.yaml, namespace stripped, values parsed."""
    path = stack_file(stack, root)
    doc = yaml.safe_load(path.read_text()) or {}
    out: dict[str, Any] = {}
    for key, value in (doc.get("config") or {}).items():
        ns, _, name = key.partition(":")
        if ns == NAMESPACE:
            out[name] = value
    return out
