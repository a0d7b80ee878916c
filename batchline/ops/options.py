"""The options several commands share, declared once: the local stack's folder, the operator
commands' output and waiting options, and the five options that name a command's target; and the
checks of the arguments several commands take (bad input exits 2)."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer

from batchline.adapters.clients import Clients
from batchline.domain import ids
from batchline.local.stack_record import DEFAULT_STATE_DIR
from batchline.ops import render
from batchline.ops.target import TargetError, resolve

STATE_DIR = typer.Option(DEFAULT_STATE_DIR, "--state-dir", help="Where pids, ports and logs live.")
JSON = typer.Option(False, "--json", help="Print JSON on stdout instead of tables.")
REQUEST_ID = typer.Option(None, "--request-id", help="Idempotency key; the same id is never run twice.")
WAIT = typer.Option(False, "--wait", help="Wait for the batch it starts to end, with a progress bar.")
TIMEOUT = typer.Option(1800.0, "--timeout", help="Seconds to wait at most.")


@dataclass(frozen=True)
class Target:
    """The deployment a command talks to, as its target options name it (batchline.ops.target)."""

    state_dir: Path
    project: str | None = None
    stack_outputs: Path | None = None
    topic_prefix: str | None = None
    setting: list[str] | None = None

    def clients(self) -> Clients:
        """The target's clients; exit 2, naming the problem, when the options name no usable target."""
        try:
            return resolve(self.state_dir, self.project, self.stack_outputs, self.topic_prefix, self.setting)
        except TargetError as exc:
            raise render.fail(str(exc)) from None


def _option(name: str, annotation: object, option: object) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


TARGET_OPTIONS = (
    _option("state_dir", Path, typer.Option(DEFAULT_STATE_DIR, "--state-dir",
                                            help="The local stack (default target).")),
    _option("project", str, typer.Option(None, "--project",
                                         help="Target a deployment in this GCP project (ADC credentials).")),
    _option("stack_outputs", Path, typer.Option(None, "--stack-outputs",
                                                help="JSON of `pulumi stack output --json` (resource names).")),
    _option("topic_prefix", str, typer.Option(None, "--topic-prefix", help="The deployment's Pub/Sub topic prefix.")),
    _option("setting", list[str], typer.Option(None, "--setting",
                                               help="KEY=VALUE of batchline.settings.Settings, e.g. main_dataset=x.")),
)


def with_target(command: Callable[..., None]) -> Callable[..., None]:
    """`command(..., target: Target)` as a command that takes the five target options after its own
    (--state-dir, --project, --stack-outputs, --topic-prefix, --setting) and passes them as one Target.
    The target is resolved where the command asks for `target.clients()`, after its own checks."""
    own = inspect.signature(command, eval_str=True)
    params = [p for p in own.parameters.values() if p.name != "target"]

    @functools.wraps(command)
    def targeted(*args, state_dir: Path, project: str | None, stack_outputs: Path | None,
                 topic_prefix: str | None, setting: list[str] | None, **kwargs) -> None:
        return command(*args, target=Target(state_dir, project, stack_outputs, topic_prefix, setting), **kwargs)

    targeted.__signature__ = own.replace(parameters=[*params, *TARGET_OPTIONS])  # what typer reads
    targeted.__annotations__ = {p.name: p.annotation for p in targeted.__signature__.parameters.values()}
    return targeted


def parse_date(value: str) -> dt.date:
    try:
        return ids.parse_game_date(value)
    except ValueError as exc:
        raise render.fail(str(exc)) from None


def valid_batch_id(batch_id: str) -> str:
    try:
        return ids.validate_batch_id(batch_id)
    except ValueError as exc:
        raise render.fail(str(exc)) from None
