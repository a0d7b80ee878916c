"""Cloud Functions gen2, HTTP-triggered, fed by our own push subscriptions and scheduler jobs.

Each source archive is `functions/<name>/main.py` + the shared `batchline/` package (without the
local stack and the CLI) + the pinned `functions/requirements.txt`. The archive object's name carries
a hash of its content, so a code change redeploys and an unchanged tree does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from batchline import settings
from batchline.topology import FUNCTIONS
from infra.components.iam import ACCESS, INVOKER_ROLE
from infra.config import StackConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNTIME = "python312"
INGRESS = "ALLOW_INTERNAL_ONLY"
FUNCTION_LABEL = "batchline-function"
EXCLUDED = ("batchline/local/", "batchline/cli.py", "batchline/ops/")  # operator CLI: typer, rich


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


def function_env(cfg: StackConfig) -> dict[str, str]:
    """The variables batchline.settings reads. BATCHLINE_ALLOW_FAULTS is never set by infra."""
    bq, t = cfg.bigquery, cfg.thresholds
    return {
        settings.ENV_PROJECT: cfg.gcp.project,
        settings.ENV_TOPIC_PREFIX: cfg.pubsub.topic_prefix,
        settings.ENV_MAIN_DATASET: bq.main_dataset,
        settings.ENV_MAIN_TABLE: bq.main_table,
        settings.ENV_CONTEXT_TABLE: bq.context_table,
        settings.ENV_STAGING_DATASET: bq.staging_dataset,
        settings.ENV_BQ_LOCATION: bq.location,
        settings.ENV_STALL_MINUTES: str(t.stall_minutes),
        settings.ENV_MIN_COMPLETION_PCT: str(t.min_completion_pct),
        settings.ENV_COVERAGE_WARNING_PCT: str(t.coverage_warning_pct),
        settings.ENV_COVERAGE_CRITICAL_PCT: str(t.coverage_critical_pct),
        settings.ENV_TIMEZONE: cfg.schedules.start.time_zone,
    }


class Functions(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, emails: dict[str, pulumi.Input[str]],
                 members: dict[str, pulumi.Input[str]], root: Path = REPO_ROOT,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:Functions", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        project, region, prefix = cfg.gcp.project, cfg.gcp.region, cfg.pubsub.topic_prefix
        self.bucket = gcp.storage.Bucket(
            f"{name}-source", project=project, name=f"{project}-{prefix}-fn-source"[:63],
            location=region, uniform_bucket_level_access=True, public_access_prevention="enforced",
            force_destroy=True,
            lifecycle_rules=[{"action": {"type": "Delete"}, "condition": {"age": 30, "with_state": "ARCHIVED"}}],
            versioning={"enabled": True}, opts=child)
        env = function_env(cfg)
        self.functions: dict[str, gcp.cloudfunctionsv2.Function] = {}
        self.objects: dict[str, gcp.storage.BucketObject] = {}
        for fn in FUNCTIONS:
            files = source_files(fn, root)
            archive = pulumi.AssetArchive({arc: pulumi.FileAsset(str(p)) for arc, p in files.items()})
            obj = gcp.storage.BucketObject(
                f"{name}-{fn}-source", bucket=self.bucket.name,
                name=f"{fn}/{content_hash(files)}.zip", source=archive, opts=child)
            caps = cfg.functions.caps[fn]
            self.objects[fn] = obj
            self.functions[fn] = gcp.cloudfunctionsv2.Function(
                f"{name}-{fn}", project=project, location=region, name=f"{prefix}-{fn}",
                description=f"batchline {fn} ({prefix})",
                labels={FUNCTION_LABEL: fn, "stack-prefix": prefix},
                build_config={
                    "runtime": RUNTIME,
                    "entry_point": fn,
                    "source": {"storage_source": {"bucket": self.bucket.name, "object": obj.name}},
                },
                service_config={
                    "max_instance_count": caps.max_instances,
                    "min_instance_count": caps.min_instances,
                    "max_instance_request_concurrency": caps.concurrency,
                    "available_memory": caps.memory,
                    "available_cpu": caps.cpu,
                    "timeout_seconds": caps.timeout_s,
                    "environment_variables": env,
                    "ingress_settings": INGRESS,
                    "all_traffic_on_latest_revision": True,
                    "service_account_email": emails[fn],
                },
                opts=child)
        # invoker: only the identities ACCESS says invoke a function (push and scheduler)
        self.invokers = [
            gcp.cloudrunv2.ServiceIamMember(
                f"{name}-{fn}-invoker-{who}", project=project, location=region,
                name=self.functions[fn].name, role=INVOKER_ROLE, member=members[who], opts=child)
            for who, access in ACCESS.items() if who in members
            for fn in access.invokes
        ]
        self.uris: dict[str, pulumi.Output[str]] = {
            fn: f.service_config.apply(lambda s: s.uri if s else None) for fn, f in self.functions.items()}
        self.register_outputs({"uris": self.uris, "bucket": self.bucket.name})
