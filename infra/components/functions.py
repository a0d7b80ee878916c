"""Cloud Functions gen2, HTTP-triggered, fed by our own push subscriptions and scheduler jobs: a source
bucket, one archive per function (infra/function_spec.py says what goes in), the functions with their
caps and settings, and the invoker grants of the identities ACCESS says call them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from infra.access import ACCESS, INVOKER_ROLE
from infra.config_types import StackConfig
from infra.function_spec import INGRESS, REPO_ROOT, RUNTIME, content_hash, function_env, source_files
from infra.labels import FUNCTION_LABEL, STACK_PREFIX_LABEL
from infra.shared import topology


@dataclass
class FunctionsArgs:
    cfg: StackConfig
    emails: dict[str, pulumi.Input[str]]  # identity -> the e-mail of its service account
    invoker_members: dict[str, pulumi.Input[str]]  # the callers (push, scheduler) -> `serviceAccount:` member
    build_account: pulumi.Input[str]  # the account Cloud Build builds the functions as
    build_grants: list[pulumi.Resource]  # its roles, granted before any build starts
    root: Path = REPO_ROOT  # the checkout the archives are made of


class Functions(pulumi.ComponentResource):
    functions: dict[str, gcp.cloudfunctionsv2.Function]
    objects: dict[str, gcp.storage.BucketObject]
    uris: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: FunctionsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:Functions", name, None, opts)
        self._name, self._args = name, args
        cfg = args.cfg
        self._project, self._region, self._prefix = cfg.gcp.project, cfg.gcp.region, cfg.pubsub.topic_prefix
        self.bucket = self._source_bucket()
        env = function_env(cfg)
        self.objects = {fn: self._source_archive(fn) for fn in topology.FUNCTIONS}
        self.functions = {fn: self._function(fn, env) for fn in topology.FUNCTIONS}
        self.invokers = self._invokers()
        self.uris = {fn: f.service_config.apply(lambda s: s.uri if s else None) for fn, f in self.functions.items()}
        self.register_outputs({"uris": self.uris, "bucket": self.bucket.name})

    def _source_bucket(self) -> gcp.storage.Bucket:
        return gcp.storage.Bucket(
            f"{self._name}-source", project=self._project, name=f"{self._project}-{self._prefix}-fn-source"[:63],
            location=self._region, uniform_bucket_level_access=True, public_access_prevention="enforced",
            force_destroy=True,
            lifecycle_rules=[{"action": {"type": "Delete"}, "condition": {"age": 30, "with_state": "ARCHIVED"}}],
            versioning={"enabled": True}, opts=pulumi.ResourceOptions(parent=self))

    def _source_archive(self, fn: str) -> gcp.storage.BucketObject:
        files = source_files(fn, self._args.root)
        archive = pulumi.AssetArchive({arc: pulumi.FileAsset(str(p)) for arc, p in files.items()})
        return gcp.storage.BucketObject(
            f"{self._name}-{fn}-source", bucket=self.bucket.name,
            name=f"{fn}/{content_hash(files)}.zip", source=archive, opts=pulumi.ResourceOptions(parent=self))

    def _function(self, fn: str, env: dict[str, str]) -> gcp.cloudfunctionsv2.Function:
        caps = self._args.cfg.functions.caps[fn]
        return gcp.cloudfunctionsv2.Function(
            f"{self._name}-{fn}", project=self._project, location=self._region, name=f"{self._prefix}-{fn}",
            description=f"batchline {fn} ({self._prefix})",
            labels={FUNCTION_LABEL: fn, STACK_PREFIX_LABEL: self._prefix},
            build_config={
                "runtime": RUNTIME,
                "entry_point": fn,
                "source": {"storage_source": {"bucket": self.bucket.name, "object": self.objects[fn].name}},
                # our own build account with exactly the roles Google lists (access.BUILD_ROLES), never
                # the project's default build account, which new projects leave without them
                "service_account": self._args.build_account,
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
                "service_account_email": self._args.emails[fn],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._args.build_grants))

    def _invokers(self) -> list[gcp.cloudrunv2.ServiceIamMember]:
        """Invoker: only the identities ACCESS says invoke a function (push and scheduler). A grant on a
        resource is replaced with it: a service recreated under the same name has no bindings."""
        members = self._args.invoker_members
        return [
            gcp.cloudrunv2.ServiceIamMember(
                f"{self._name}-{fn}-invoker-{who}", project=self._project, location=self._region,
                name=self.functions[fn].name, role=INVOKER_ROLE, member=members[who],
                opts=pulumi.ResourceOptions(parent=self, replace_with=[self.functions[fn]]))
            for who, access in ACCESS.items() if who in members
            for fn in access.invokes
        ]
