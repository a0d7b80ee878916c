"""What each function is deployed as, apart from Pulumi: its runtime and ingress, the files of its
source archive and their hash, and the environment it reads its settings from. Pure (no Pulumi): the
Functions component deploys it, the rules check it, the tests read it.

Each source archive is `functions/<name>/main.py` + the shared `batchline/` package (without the
local stack and the operator CLI) + the pinned `functions/requirements.txt`. The archive object's name
carries a hash of its content, so a code change redeploys and an unchanged tree does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from infra import capacity
from infra.shared import settings, topology

if TYPE_CHECKING:
    from infra.config_types import StackConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNTIME = "python312"
INGRESS = "ALLOW_INTERNAL_ONLY"  # Pub/Sub push and Cloud Scheduler of the same project count as internal
EXCLUDED = ("batchline/local/", "batchline/ops/cli.py", "batchline/ops/")  # operator CLI: typer, rich


def source_files(function: str, root: Path = REPO_ROOT) -> dict[str, Path]:
    """Archive path -> file on disk. Paths that do not exist yet are still listed for main.py and
    requirements.txt (the engine fails loudly on `pulumi up` if they are still missing)."""
    files = {"main.py": root / "functions" / function / "main.py",
             "requirements.txt": root / "functions" / "requirements.txt"}
    pkg = root / "batchline"
    for p in sorted(pkg.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if (p.is_file() and "__pycache__" not in p.parts and not rel.endswith((".pyc", ".pyo"))
                and not any(rel == e or rel.startswith(e) for e in EXCLUDED)):
            files[rel] = p
    return files


def content_hash(files: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for arc, p in sorted(files.items()):
        h.update(arc.encode())
        h.update(p.read_bytes() if p.is_file() else b"<missing>")
    return h.hexdigest()[:16]


def function_settings(cfg: StackConfig) -> settings.Settings:
    """The settings each deployed function must read back from its environment."""
    bq, t = cfg.bigquery, cfg.thresholds
    worker, coordinator = cfg.functions.caps[topology.WORKER], cfg.functions.caps[topology.COORDINATOR]
    rate = capacity.dispatch_rate(capacity.slots_of(topology.WORKER, worker.max_instances, worker.concurrency),
                                  cfg.capacity.worker_item_s)
    return settings.Settings(
        project=cfg.gcp.project, topic_prefix=cfg.pubsub.topic_prefix, main_dataset=bq.main_dataset,
        main_table=bq.main_table, context_table=bq.context_table, staging_dataset=bq.staging_dataset,
        bq_location=bq.location, firestore_database=cfg.firestore.database, stall_minutes=t.stall_minutes,
        min_completion_pct=t.min_completion_pct,
        coverage_warning_pct=t.coverage_warning_pct, coverage_critical_pct=t.coverage_critical_pct,
        allow_faults=False, timezone=cfg.schedules.start.time_zone,
        dispatch_rate=round(rate, 3), dispatch_budget_s=capacity.dispatch_budget_s(coordinator.timeout_s))


def function_env(cfg: StackConfig) -> dict[str, str]:
    """The variables batchline.settings reads, rendered by the settings object itself (one source of
    the contract). BATCHLINE_ALLOW_FAULTS is never set by infra."""
    return function_settings(cfg).deployed_env()
