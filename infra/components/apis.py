"""Required Google APIs, enabled before anything that needs them."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp


class Apis(pulumi.ComponentResource):
    def __init__(self, name: str, project: str, apis: tuple[str, ...],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchline:infra:Apis", name, None, opts)
        self.services = [
            gcp.projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=project,
                service=api,
                disable_on_destroy=False,  # other stacks in the project may use it
                disable_dependent_services=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in apis
        ]
        self.register_outputs({"services": [s.service for s in self.services]})
