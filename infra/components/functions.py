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
from infra import capacity
from infra.access import FUNCTION_LABEL
from infra.components.iam import ACCESS, INVOKER_ROLE
from infra.config import StackConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNTIME = "python312"
INGRESS = "ALLOW_INTERNAL_ONLY"
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


def function_settings(cfg: StackConfig) -> settings.Settings:
    """The settings each deployed function must read back from its environment."""
    bq, t = cfg.bigquery, cfg.thresholds
    worker, coordinator = cfg.functions.caps["worker"], cfg.functions.caps["coordinator"]
    rate = capacity.dispatch_rate(capacity.slots_of("worker", worker.max_instances, worker.concurrency),
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


class Functions(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, emails: dict[str, pulumi.Input[str]],
                 members: dict[str, pulumi.Input[str]], build_account: pulumi.Input[str],
                 build_grants: list[pulumi.Resource], root: Path = REPO_ROOT,
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
                    # our own build account with exactly the roles Google lists (iam.BUILD_ROLES), never
                    # the project's default build account, which new projects leave without them
                    "service_account": build_account,
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
                opts=pulumi.ResourceOptions(parent=self, depends_on=build_grants))
        # invoker: only the identities ACCESS says invoke a function (push and scheduler). A grant on a
        # resource is replaced with it: a service recreated under the same name has no bindings.
        self.invokers = [
            gcp.cloudrunv2.ServiceIamMember(
                f"{name}-{fn}-invoker-{who}", project=project, location=region,
                name=self.functions[fn].name, role=INVOKER_ROLE, member=members[who],
                opts=pulumi.ResourceOptions(parent=self, replace_with=[self.functions[fn]]))
            for who, access in ACCESS.items() if who in members
            for fn in access.invokes
        ]
        self.uris: dict[str, pulumi.Output[str]] = {
            fn: f.service_config.apply(lambda s: s.uri if s else None) for fn, f in self.functions.items()}
        self.register_outputs({"uris": self.uris, "bucket": self.bucket.name})
