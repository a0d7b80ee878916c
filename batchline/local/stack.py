"""The whole local stack: three emulators, three functions under functions-framework (gunicorn, as
in production), and the topology and tables provisioned from the shared definitions.

State lives in one folder (`stack.json`, `logs/`), so `batchline local down` in another shell stops
exactly the processes `up` started, by their recorded pids.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from batchline import topology as topo
from batchline.clients import Clients
from batchline.local import processes as procs
from batchline.local.provision import create_tables, create_topology
from batchline.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTION_SOURCES = {name: REPO_ROOT / "functions" / name / "main.py" for name in topo.FUNCTIONS}
DEFAULT_STATE_DIR = REPO_ROOT / ".batchline" / "local"
STATE_FILE = "stack.json"
# The Pub/Sub emulator (0.8.x) applies a subscription's retry policy, and under load some nacked
# messages then never come back (seen: 23 of 450 items stuck for minutes, never dead-lettered).
# Without a retry policy it redelivers a nacked push after ~1 s and dead-letters reliably, so the
# local stack leaves the policy out; infra deploys it (real Pub/Sub honours it).
LOCAL_BACKOFF = {"retry_policy": 0}
# Without a retry policy every attempt follows the last after ~1 s, so 5 attempts (production's
# default, spread over minutes by its backoff) last ~5 s here: a function restarting for 5-12 s
# dead-lettered 62% of a batch. 20 attempts give a local outage ~20 s before anything is dead-lettered.
LOCAL_MAX_DELIVERY_ATTEMPTS = 20


@dataclass
class StackInfo:
    state_dir: str
    settings: dict
    services: dict[str, dict] = field(default_factory=dict)
    max_delivery_attempts: int = LOCAL_MAX_DELIVERY_ATTEMPTS

    @property
    def handles(self) -> dict[str, procs.ServiceHandle]:
        return {k: procs.ServiceHandle.from_dict(v) for k, v in self.services.items()}

    def client_env(self) -> dict[str, str]:
        h = self.handles
        return procs.env_for_clients(h.get(procs.PUBSUB), h.get(procs.FIRESTORE), h.get(procs.BIGQUERY))

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
        answering = alive and procs._http_get(h.url + ("/" if name in topo.FUNCTIONS else "")) is not None
        out[name] = {"pid": h.pid, "url": h.url, "alive": alive, "answering": answering, "log": h.log_path}
    return out


def is_up(state_dir: Path | str = DEFAULT_STATE_DIR) -> bool:
    st = status(state_dir)
    expected = {procs.PUBSUB, procs.FIRESTORE, procs.BIGQUERY, *topo.FUNCTIONS}
    return set(st) == expected and all(s["answering"] for s in st.values())


def down(state_dir: Path | str = DEFAULT_STATE_DIR) -> list[str]:
    """Stop every recorded process (functions first, so nothing pushes into a dead emulator)."""
    info = load(state_dir)
    if info is None:
        return []
    stopped = []
    order = [*topo.FUNCTIONS, procs.PUBSUB, procs.FIRESTORE, procs.BIGQUERY]
    for name in sorted(info.handles, key=lambda n: order.index(n) if n in order else 99):
        if procs.stop(info.handles[name]):
            stopped.append(name)
    (Path(state_dir) / STATE_FILE).unlink(missing_ok=True)
    return stopped


def _start_function(name: str, state_dir: Path, env: dict[str, str], threads: int,
                    port: int | None = None) -> procs.ServiceHandle:
    """A function under functions-framework; `port` to bring one back where its push subscriptions point."""
    port = port or procs.free_port()
    argv = [sys.executable, "-m", "functions_framework", "--target", name,
            "--source", str(FUNCTION_SOURCES[name]), "--host", procs.LOOPBACK, "--port", str(port)]
    full_env = {**env, "THREADS": str(threads), "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    url = f"http://{procs.LOOPBACK}:{port}/"
    return procs.start_process(name, argv, state_dir, full_env, lambda: procs._http_get(url) is not None,
                               60.0, port=port)


def up(state_dir: Path | str = DEFAULT_STATE_DIR, settings: Settings | None = None, *,
       threads: int = 4, max_delivery_attempts: int = LOCAL_MAX_DELIVERY_ATTEMPTS, allow_faults: bool = True,
       reuse: bool = True) -> StackInfo:
    """Start (or reuse) the stack and provision it; returns what a client needs to use it."""
    state_dir = Path(state_dir)
    if reuse and is_up(state_dir):
        info = load(state_dir)
        assert info is not None
        return info
    down(state_dir)
    base = settings or Settings()
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            procs.PUBSUB: pool.submit(procs.start_pubsub, state_dir, project=base.project),
            procs.FIRESTORE: pool.submit(procs.start_firestore, state_dir, project=base.project),
            procs.BIGQUERY: pool.submit(procs.start_bigquery, state_dir, project=base.project),
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
    s = replace(base, bigquery_emulator_host=handles[procs.BIGQUERY].host, allow_faults=allow_faults)
    info = StackInfo(str(state_dir), s.__dict__, {k: v.to_dict() for k, v in handles.items()},
                     max_delivery_attempts)
    info.save()
    try:
        clients = info.activate()
        create_tables(clients.bq, s)
        env = {**s.as_env(), **info.client_env()}
        with ThreadPoolExecutor(max_workers=3) as pool:
            fn_handles = dict(zip(topo.FUNCTIONS,
                                  pool.map(lambda n: _start_function(n, state_dir, env, threads), topo.FUNCTIONS),
                                  strict=True))
        info.services.update({k: v.to_dict() for k, v in fn_handles.items()})
        info.save()
        create_topology(s.project, clients.topology, {k: v.url for k, v in fn_handles.items()},
                        {"max_delivery_attempts": max_delivery_attempts, **LOCAL_BACKOFF})
    except BaseException:
        down(state_dir)
        raise
    return info
