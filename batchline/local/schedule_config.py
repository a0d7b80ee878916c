"""Which jobs the local scheduler runs: the stack's own (`Pulumi.<stack>.yaml`, validated by the same
infra.config.load that `pulumi up` runs, rendered by the same batchline.schedules.render_jobs), with
local cron overrides for people who work outside the configured hours.

An override is `NAME=CRON` (NAME: the job's key, e.g. `stall-check`, or its full name) or `NAME=off`
(paused, like a paused Cloud Scheduler job); a file of overrides is a YAML/JSON mapping of the same.
Each override's cron is checked against Google's unix-cron grammar, like the stack's own. The rendered
jobs are written to `<state dir>/schedules.json`, which the scheduler process and the CLI read.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from batchline.schedules import ScheduledJob, render_jobs

REPO_ROOT = Path(__file__).resolve().parents[2]
JOBS_FILE = "schedules.json"
PAUSED = "off"
_STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class ScheduleConfigError(ValueError):
    """The stack file or an override is invalid; the message says which and why."""


class LocalJob(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job: ScheduledJob  # as rendered, with the override's cron if any
    configured_cron: str | None = None  # the stack's cron, when overridden
    paused: bool = False

    @property
    def overridden(self) -> bool:
        return self.configured_cron is not None or self.paused


class LocalSchedules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    stack: str
    overrides: dict[str, str] = {}
    jobs: tuple[LocalJob, ...] = ()

    def find(self, name: str) -> LocalJob:
        for j in self.jobs:
            if name in (j.job.key, j.job.name):
                return j
        raise ScheduleConfigError(f"no job {name!r}; the jobs are {', '.join(j.job.key for j in self.jobs)}")


def parse_overrides(specs: Iterable[str] = (), file: Path | None = None) -> dict[str, str]:
    """`NAME=CRON` options (after the file's mapping, so they win) -> {name: cron or "off"}."""
    out: dict[str, str] = {}
    if file is not None:
        try:
            doc = yaml.safe_load(Path(file).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ScheduleConfigError(f"schedule file {file}: {exc}") from exc
        if not isinstance(doc, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items()):
            raise ScheduleConfigError(f"schedule file {file} must map job names to cron strings, e.g. "
                                      "{stall-check: '* * * * *'}")
        out.update(doc)
    for spec in specs:
        name, sep, cron = spec.partition("=")
        if not sep or not name.strip() or not cron.strip():
            raise ScheduleConfigError(f"--schedule {spec!r}: expected NAME=CRON, e.g. stall-check='* * * * *'")
        out[name.strip()] = cron.strip()
    return out


def load(stack: str = "dev", overrides: Mapping[str, str] | None = None, root: Path | None = None) -> LocalSchedules:
    """The stack's jobs, validated as `pulumi up` validates them, with `overrides` applied."""
    if not (REPO_ROOT / "infra" / "config.py").is_file():
        raise ScheduleConfigError(f"the stack's jobs are read with the repository's infra/, not found in {REPO_ROOT}")
    if str(REPO_ROOT) not in sys.path:  # the local stack runs from a checkout (its functions/ too)
        sys.path.append(str(REPO_ROOT))
    from infra import config, stack_file
    from infra.config_fields import cron_problem

    if not _STACK_NAME.fullmatch(stack) or ".." in stack:
        raise ScheduleConfigError(f"--stack {stack!r}: a stack name is letters, digits, '_', '.' and '-'")
    kwargs = {} if root is None else {"root": root}
    try:
        raw = stack_file.load_stack_config(stack, **kwargs)
        # the Slack token's value is never needed locally, only the schedules: count it as set
        cfg = config.load(raw, has_slack_token=True)
    except FileNotFoundError as exc:
        raise ScheduleConfigError(f"no stack file for stack {stack!r}: {exc.filename}") from exc
    except config.ConfigError as exc:
        raise ScheduleConfigError(f"Pulumi.{stack}.yaml: {exc}") from exc
    jobs = {j.key: LocalJob(job=j) for j in render_jobs(cfg.pubsub.topic_prefix, cfg.schedules)}
    by_name = {lj.job.name: key for key, lj in jobs.items()}
    for name, cron in (overrides or {}).items():
        key = name if name in jobs else by_name.get(name)
        if key is None:
            raise ScheduleConfigError(f"--schedule {name}: no such job; the jobs are {', '.join(jobs)}")
        lj = jobs[key]
        if cron == PAUSED:
            jobs[key] = lj.model_copy(update={"paused": True})
            continue
        problem = cron_problem(cron)
        if problem:
            raise ScheduleConfigError(f"--schedule {name}={cron!r} is not a 5-field unix-cron expression: {problem}")
        jobs[key] = LocalJob(job=lj.job.model_copy(update={"cron": cron}), configured_cron=lj.job.cron)
    return LocalSchedules(stack=stack, overrides=dict(overrides or {}), jobs=tuple(jobs.values()))


def write(state_dir: Path | str, schedules: LocalSchedules) -> None:
    path = Path(state_dir) / JOBS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(schedules.model_dump_json(indent=2))
    os.replace(tmp, path)


def read(state_dir: Path | str) -> LocalSchedules | None:
    try:
        return LocalSchedules.model_validate_json((Path(state_dir) / JOBS_FILE).read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ScheduleConfigError(f"{Path(state_dir) / JOBS_FILE} is unreadable: {exc}") from exc


def remove(state_dir: Path | str) -> None:
    (Path(state_dir) / JOBS_FILE).unlink(missing_ok=True)


def describe(schedules: LocalSchedules) -> str:
    return json.dumps({j.job.key: (PAUSED if j.paused else j.job.cron) for j in schedules.jobs})
