"""The record of a local stack in its state folder, and the lock every change to it holds.

`stack.json` says which processes make up the stack (their handles), the settings its functions run
with and how they were started, so `batchline local down` in another shell stops exactly the
processes `up` started, by their recorded pids. Starting, healing and stopping the stack hold an
exclusive lock (`stack.lock`, fcntl.flock) in that folder: one change at a time, across processes.

This is the module the stack's parts share (batchline.local.stack, .heal, .stack_scheduler): it
imports none of them.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from batchline.adapters.clients import Clients
from batchline.local import emulators
from batchline.local import processes as procs
from batchline.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".batchline" / "local"
STATE_FILE = "stack.json"
LOCK_FILE = "stack.lock"
# Without a retry policy (batchline.local.provision.LOCAL_BACKOFF) every attempt follows the last after
# ~1 s, so 5 attempts (production's default, spread over minutes by its backoff) last ~5 s here: a
# function restarting for 5-12 s dead-lettered 62% of a batch. 20 attempts give a local outage ~20 s
# before anything is dead-lettered.
LOCAL_MAX_DELIVERY_ATTEMPTS = 20
SCHEDULER = "scheduler"  # batchline.local.stack_scheduler: the stack's Cloud Scheduler jobs, run locally


@dataclass
class StackInfo:
    state_dir: str
    settings: dict
    services: dict[str, dict] = field(default_factory=dict)
    max_delivery_attempts: int = LOCAL_MAX_DELIVERY_ATTEMPTS
    threads: int = 4
    # started by a `batchline run` without --keep-stack: the last run using it stops it
    ephemeral: bool = False

    @property
    def handles(self) -> dict[str, procs.ServiceHandle]:
        return {k: procs.ServiceHandle.from_dict(v) for k, v in self.services.items()}

    def client_env(self) -> dict[str, str]:
        h = self.handles
        return emulators.env_for_clients(h.get(emulators.PUBSUB), h.get(emulators.FIRESTORE),
                                         h.get(emulators.BIGQUERY))

    def settings_obj(self) -> Settings:
        return Settings(**self.settings)

    def url(self, function: str) -> str:
        return self.handles[function].url

    def activate(self) -> Clients:
        """Point this process's clients at the stack and return them."""
        os.environ.update(self.client_env())
        return Clients(self.settings_obj())

    def save(self) -> None:
        path = Path(self.state_dir) / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=2, default=str))


def load(state_dir: Path | str = DEFAULT_STATE_DIR) -> StackInfo | None:
    path = Path(state_dir) / STATE_FILE
    try:
        return StackInfo(**json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


@contextmanager
def exclusive(state_dir: Path | str) -> Iterator[None]:
    """Hold the stack's lock: one `up`/`down`/heal at a time per state folder, across processes."""
    path = Path(state_dir)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / LOCK_FILE, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@dataclass
class UpReport:
    """What a change under the lock did, service by service. `fresh` means nothing was reused (the
    caller started it)."""

    started: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    state_lost: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    @property
    def fresh(self) -> bool:
        return not self.reused and not self.restarted


def warn_on_stderr(message: str) -> None:
    """The default `notify` of the stack's changes."""
    print(message, file=sys.stderr, flush=True)
