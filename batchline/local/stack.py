"""The whole local stack: three emulators, three functions under functions-framework (gunicorn, as
in production), and the topology and tables provisioned from the shared definitions.

State lives in one folder (`stack.json`, `logs/`), so `batchline local down` in another shell stops
exactly the processes `up` started, by their recorded pids.

Starting, healing and stopping the stack hold an exclusive lock (`stack.lock`, fcntl.flock) in that
folder, so a second `up` started at the same moment waits and then reuses what the first started
(before, two concurrent runs left a whole second, unrecorded stack behind). `up` reuses every
process that answers and restarts only what died (`batchline.local.heal`); it never tears a stack
down unless asked to (`reuse=False`), and says so when it does.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from batchline import topology as topo
from batchline.adapters.clients import Clients
from batchline.local import emulators
from batchline.local import processes as procs
from batchline.local.provision import create_tables, create_topology
from batchline.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTION_SOURCES = {name: REPO_ROOT / "functions" / name / "main.py" for name in topo.FUNCTIONS}
DEFAULT_STATE_DIR = REPO_ROOT / ".batchline" / "local"
STATE_FILE = "stack.json"
LOCK_FILE = "stack.lock"
USERS_DIR = "users"
EMULATORS = emulators.EMULATORS
# The Pub/Sub emulator (0.8.x) applies a subscription's retry policy, and under load some nacked
# messages then never come back (seen: 23 of 450 items stuck for minutes, never dead-lettered).
# Without a retry policy it redelivers a nacked push after ~1 s and dead-letters reliably, so the
# local stack leaves the policy out; infra deploys it (real Pub/Sub honours it).
LOCAL_BACKOFF = {"retry_policy": 0}
# Without a retry policy every attempt follows the last after ~1 s, so 5 attempts (production's
# default, spread over minutes by its backoff) last ~5 s here: a function restarting for 5-12 s
# dead-lettered 62% of a batch. 20 attempts give a local outage ~20 s before anything is dead-lettered.
LOCAL_MAX_DELIVERY_ATTEMPTS = 20
SCHEDULER = "scheduler"  # batchline.local.stack_scheduler: the stack's Cloud Scheduler jobs, run locally
KEEP = "keep"  # `up(schedules=KEEP)`: whatever scheduler the stack has (a new stack: none)


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
        return emulators.env_for_clients(h.get(emulators.PUBSUB), h.get(emulators.FIRESTORE), h.get(emulators.BIGQUERY))

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


def status(state_dir: Path | str = DEFAULT_STATE_DIR) -> dict[str, dict]:
    """Each recorded service: alive (same pid and start time) and answering its health check."""
    info = load(state_dir)
    if info is None:
        return {}
    out = {}
    for name, h in info.handles.items():
        alive = procs.is_alive(h)
        if name == SCHEDULER:  # its health answer is 503 when its loop stalled
            answering = alive and (r := procs.http_get(h.url + "/")) is not None and r[0] == 200
        else:
            answering = alive and procs.http_get(h.url + ("/" if name in topo.FUNCTIONS else "")) is not None
        out[name] = {"pid": h.pid, "url": h.url, "alive": alive, "answering": answering, "log": h.log_path}
    return out


def is_up(state_dir: Path | str = DEFAULT_STATE_DIR) -> bool:
    st = status(state_dir)
    expected = {emulators.PUBSUB, emulators.FIRESTORE, emulators.BIGQUERY, *topo.FUNCTIONS}
    return set(st) - {SCHEDULER} == expected and all(s["answering"] for s in st.values())


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


def down(state_dir: Path | str = DEFAULT_STATE_DIR) -> list[str]:
    """Stop every recorded process (functions first, so nothing pushes into a dead emulator)."""
    with exclusive(state_dir):
        return _down_locked(Path(state_dir))


def _down_locked(state_dir: Path) -> list[str]:
    info = load(state_dir)
    if info is None:
        return []
    from batchline.local import stack_scheduler

    stopped = []
    order = [SCHEDULER, *topo.FUNCTIONS, emulators.PUBSUB, emulators.FIRESTORE, emulators.BIGQUERY]
    for name in sorted(info.handles, key=lambda n: order.index(n) if n in order else 99):
        if procs.stop(info.handles[name]):
            stopped.append(name)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    stack_scheduler.forget(state_dir)
    for f in (state_dir / USERS_DIR).glob("*.json"):
        f.unlink(missing_ok=True)
    return stopped


def start_function(name: str, state_dir: Path, env: dict[str, str], threads: int,
                   port: int | None = None) -> procs.ServiceHandle:
    port = port or procs.free_port()
    argv = [sys.executable, "-m", "functions_framework", "--target", name,
            "--source", str(FUNCTION_SOURCES[name]), "--host", procs.LOOPBACK, "--port", str(port)]
    full_env = {**env, "THREADS": str(threads), "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    url = f"http://{procs.LOOPBACK}:{port}/"
    return procs.start_process(name, argv, state_dir, full_env, lambda: procs.http_get(url) is not None,
                               60.0, port=port)


def function_env(info: StackInfo) -> dict[str, str]:
    return {**info.settings_obj().as_env(), **info.client_env()}


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class UpReport:
    """What `up` did, service by service. `fresh` means nothing was reused (the caller started it)."""

    started: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    state_lost: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    @property
    def fresh(self) -> bool:
        return not self.reused and not self.restarted


def up(state_dir: Path | str = DEFAULT_STATE_DIR, settings: Settings | None = None, *,
       threads: int = 4, max_delivery_attempts: int = LOCAL_MAX_DELIVERY_ATTEMPTS, allow_faults: bool = True,
       reuse: bool = True, schedules=KEEP) -> StackInfo:
    """Start (or reuse) the stack and provision it; returns what a client needs to use it."""
    return up_with_report(state_dir, settings, threads=threads, max_delivery_attempts=max_delivery_attempts,
                          allow_faults=allow_faults, reuse=reuse, schedules=schedules)[0]


def up_with_report(state_dir: Path | str = DEFAULT_STATE_DIR, settings: Settings | None = None, *,
                   threads: int = 4, max_delivery_attempts: int = LOCAL_MAX_DELIVERY_ATTEMPTS,
                   allow_faults: bool = True, reuse: bool = True, ephemeral: bool = False, user: bool = False,
                   notify: Callable[[str], None] = _warn, schedules=KEEP) -> tuple[StackInfo, UpReport]:
    """`up` under the stack lock. With `reuse`, every live and answering process is kept and only
    dead ones are restarted (`heal`); an emulator restarted that way lost its in-memory state, and
    `notify` is told so. Without `reuse` the recorded stack is stopped first (and `notify` told).
    `ephemeral` marks a stack started here for one run; `user` registers this process as using the
    stack (see `release`). `schedules` (a schedule_config.LocalSchedules, or None for none) sets the
    scheduler's jobs; KEEP leaves the stack's scheduler as it is."""
    from batchline.local import heal, stack_scheduler

    state_dir = Path(state_dir)
    with exclusive(state_dir):
        report = UpReport()
        info = load(state_dir)
        if info is not None and not reuse:
            report.stopped = _down_locked(state_dir)
            if report.stopped:
                notify(f"WARNING: stopped the running stack ({', '.join(report.stopped)}) as asked; "
                       "everything the emulators held is gone")
            info = None
        if info is not None and not any(procs.is_alive(h) for h in info.handles.values()):
            notify(f"WARNING: the stack recorded in {state_dir} is no longer running (every process "
                   "died): starting a new one; what its emulators held is gone")
            _down_locked(state_dir)
            info = None
        if info is None:
            info = _start_locked(state_dir, settings or Settings(), threads, max_delivery_attempts, allow_faults,
                                 ephemeral)
            report.started = list(info.services)
        else:
            heal.heal_locked(info, report, notify)
            if not ephemeral and info.ephemeral:
                info.ephemeral = False  # someone asked for the stack itself: it outlives the run
                info.save()
        if schedules is not KEEP:
            try:
                stack_scheduler.configure_locked(info, schedules, report, notify)
            except BaseException:
                if report.started:  # a stack this call started is not left half-up
                    _down_locked(state_dir)
                raise
        if user:
            _register_user(state_dir)
        return info, report


def _user_file(state_dir: Path, pid: int) -> Path:
    return state_dir / USERS_DIR / f"{pid}.json"


def _register_user(state_dir: Path) -> None:
    st = procs.proc_stat(os.getpid())
    path = _user_file(state_dir, os.getpid())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "start_ticks": st[2] if st else -1}))


def live_users(state_dir: Path | str) -> list[int]:
    """Processes registered as using the stack that are still running."""
    users = []
    for f in (Path(state_dir) / USERS_DIR).glob("*.json"):
        try:
            u = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if procs.still_running(int(u["pid"]), int(u["start_ticks"])):
            users.append(int(u["pid"]))
    return users


def release(state_dir: Path | str = DEFAULT_STATE_DIR) -> list[str]:
    """This process no longer uses the stack. An ephemeral stack (started by a run without
    --keep-stack) is stopped when its last user releases it; returns what was stopped."""
    state_dir = Path(state_dir)
    with exclusive(state_dir):
        _user_file(state_dir, os.getpid()).unlink(missing_ok=True)
        info = load(state_dir)
        if info is None or not info.ephemeral or live_users(state_dir):
            return []
        return _down_locked(state_dir)


def _start_locked(state_dir: Path, base: Settings, threads: int, max_delivery_attempts: int,
                  allow_faults: bool, ephemeral: bool) -> StackInfo:
    """Start every process of a new stack (the caller holds the lock and checked nothing runs)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            emulators.PUBSUB: pool.submit(emulators.start_pubsub, state_dir, project=base.project),
            emulators.FIRESTORE: pool.submit(emulators.start_firestore, state_dir, project=base.project),
            emulators.BIGQUERY: pool.submit(emulators.start_bigquery, state_dir, project=base.project),
        }
        handles: dict[str, procs.ServiceHandle] = {}
        errors = []
        for name, f in futures.items():
            try:
                handles[name] = f.result()
            except Exception as exc:  # noqa: BLE001 - re-raised below after cleaning up the others
                errors.append(exc)
    if errors:
        for h in handles.values():
            procs.stop(h)
        raise errors[0]
    s = replace(base, bigquery_emulator_host=handles[emulators.BIGQUERY].host,
                bigquery_write_emulator_host=emulators.bigquery_write_host(handles[emulators.BIGQUERY]),
                allow_faults=allow_faults)
    info = StackInfo(str(state_dir), s.__dict__, {k: v.to_dict() for k, v in handles.items()},
                     max_delivery_attempts, threads, ephemeral)
    info.save()
    try:
        clients = info.activate()
        create_tables(clients.bq, s)
        env = function_env(info)
        with ThreadPoolExecutor(max_workers=3) as pool:
            fn_handles = dict(zip(topo.FUNCTIONS,
                                  pool.map(lambda n: start_function(n, state_dir, env, threads), topo.FUNCTIONS),
                                  strict=True))
        info.services.update({k: v.to_dict() for k, v in fn_handles.items()})
        info.save()
        provision_topology(info)
    except BaseException:
        _down_locked(state_dir)
        raise
    return info


def provision_topology(info: StackInfo) -> None:
    """Create (or recreate) every topic and subscription, pushing to the functions' current URLs."""
    create_topology(info.settings_obj().project, build_topology_for(info),
                    {k: info.url(k) for k in topo.FUNCTIONS},
                    {"max_delivery_attempts": info.max_delivery_attempts, **LOCAL_BACKOFF})


def build_topology_for(info: StackInfo) -> topo.Topology:
    return topo.build_topology(info.settings_obj().topic_prefix)
