"""Required Google APIs, enabled before anything that needs them."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp


@dataclass
class ApisArgs:
    project: str
    apis: tuple[str, ...]  # service names, e.g. pubsub.googleapis.com


class Apis(pulumi.ComponentResource):
    def __init__(self, name: str, args: ApisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:Apis", name, None, opts)
        self.services = [
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=args.project,
                service=api,
                disable_on_destroy=False,  # other stacks in the project may use it
                disable_dependent_services=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in args.apis
        ]
        self.register_outputs({"services": [s.service for s in self.services]})
