"""The whole local stack: three emulators, three functions under functions-framework (gunicorn, as
in production), the scheduler, and the topology and tables provisioned from the shared definitions.

Its record and lock live in one folder (batchline.local.stack_record). `up` reuses every process that
answers and restarts only what died (batchline.local.heal); it never tears a stack down unless asked
to (`reuse=False`), and says so when it does. A second `up` started at the same moment waits for the
lock and then reuses what the first started (before the lock, two concurrent runs left a whole
second, unrecorded stack behind).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from batchline import topology as topo
from batchline.local import emulators, function_servers, heal, stack_scheduler
from batchline.local import processes as procs
from batchline.local.provision import create_tables, provision_topology
from batchline.local.stack_record import (
    DEFAULT_STATE_DIR,
    LOCAL_MAX_DELIVERY_ATTEMPTS,
    SCHEDULER,
    STATE_FILE,
    StackInfo,
    UpReport,
    exclusive,
    load,
    warn_on_stderr,
)
from batchline.settings import Settings

USERS_DIR = "users"
KEEP = "keep"  # `up(schedules=KEEP)`: whatever scheduler the stack has (a new stack: none)


def status(state_dir: Path | str = DEFAULT_STATE_DIR) -> dict[str, dict]:
    """Each recorded service: alive (same pid and start time) and answering its health check."""
    info = load(state_dir)
    if info is None:
        return {}
    out = {}
    for name, h in info.handles.items():
        alive = procs.is_alive(h)
        if name == SCHEDULER:  # its health answer is 503 when its loop stalled
            answering = alive and stack_scheduler.answering(h)
        elif name in topo.FUNCTIONS:
            answering = alive and function_servers.answering(h)
        else:
            answering = alive and procs.http_get(h.url) is not None
        out[name] = {"pid": h.pid, "url": h.url, "alive": alive, "answering": answering, "log": h.log_path}
    return out


def is_up(state_dir: Path | str = DEFAULT_STATE_DIR) -> bool:
    st = status(state_dir)
    expected = {*emulators.EMULATORS, *topo.FUNCTIONS}
    return set(st) - {SCHEDULER} == expected and all(s["answering"] for s in st.values())


def down(state_dir: Path | str = DEFAULT_STATE_DIR) -> list[str]:
    """Stop every recorded process (functions first, so nothing pushes into a dead emulator)."""
    with exclusive(state_dir):
        return _down_locked(Path(state_dir))


def _down_locked(state_dir: Path) -> list[str]:
    info = load(state_dir)
    if info is None:
        return []
    stopped = []
    order = [SCHEDULER, *topo.FUNCTIONS, *emulators.EMULATORS]
    for name in sorted(info.handles, key=lambda n: order.index(n) if n in order else 99):
        if procs.stop(info.handles[name]):
            stopped.append(name)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    stack_scheduler.forget(state_dir)
    for f in (state_dir / USERS_DIR).glob("*.json"):
        f.unlink(missing_ok=True)
    return stopped


def up(state_dir: Path | str = DEFAULT_STATE_DIR, settings: Settings | None = None, *,
       threads: int = 4, max_delivery_attempts: int = LOCAL_MAX_DELIVERY_ATTEMPTS, allow_faults: bool = True,
       reuse: bool = True, schedules=KEEP) -> StackInfo:
    """Start (or reuse) the stack and provision it; returns what a client needs to use it."""
    return up_with_report(state_dir, settings, threads=threads, max_delivery_attempts=max_delivery_attempts,
                          allow_faults=allow_faults, reuse=reuse, schedules=schedules)[0]


def up_with_report(state_dir: Path | str = DEFAULT_STATE_DIR, settings: Settings | None = None, *,
                   threads: int = 4, max_delivery_attempts: int = LOCAL_MAX_DELIVERY_ATTEMPTS,
                   allow_faults: bool = True, reuse: bool = True, ephemeral: bool = False, user: bool = False,
                   notify: Callable[[str], None] = warn_on_stderr, schedules=KEEP) -> tuple[StackInfo, UpReport]:
    """`up` under the stack lock. With `reuse`, every live and answering process is kept and only
    dead ones are restarted (`heal`); an emulator restarted that way lost its in-memory state, and
    `notify` is told so. Without `reuse` the recorded stack is stopped first (and `notify` told).
    `ephemeral` marks a stack started here for one run; `user` registers this process as using the
    stack (see `release`). `schedules` (a schedule_config.LocalSchedules, or None for none) sets the
    scheduler's jobs; KEEP leaves the stack's scheduler as it is."""
    state_dir = Path(state_dir)
    with exclusive(state_dir):
        report = UpReport()
        info = _reusable_locked(state_dir, reuse, report, notify)
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


def _reusable_locked(state_dir: Path, reuse: bool, report: UpReport,
                     notify: Callable[[str], None]) -> StackInfo | None:
    """The recorded stack if `up` may heal and reuse it; else None, after stopping what is left of it."""
    info = load(state_dir)
    if info is not None and not reuse:
        report.stopped = _down_locked(state_dir)
        if report.stopped:
            notify(f"WARNING: stopped the running stack ({', '.join(report.stopped)}) as asked; "
                   "everything the emulators held is gone")
        return None
    if info is not None and not any(procs.is_alive(h) for h in info.handles.values()):
        notify(f"WARNING: the stack recorded in {state_dir} is no longer running (every process "
               "died): starting a new one; what its emulators held is gone")
        _down_locked(state_dir)
        return None
    return info


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


def _start_emulators(state_dir: Path, project: str) -> dict[str, procs.ServiceHandle]:
    """The three emulators, started side by side; if one fails, the others are stopped again."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(start, state_dir, project=project) for name, start in emulators.STARTERS.items()}
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
    return handles


def _start_locked(state_dir: Path, base: Settings, threads: int, max_delivery_attempts: int,
                  allow_faults: bool, ephemeral: bool) -> StackInfo:
    """Start every process of a new stack (the caller holds the lock and checked nothing runs)."""
    handles = _start_emulators(state_dir, base.project)
    bq = handles[emulators.BIGQUERY]
    s = replace(base, bigquery_emulator_host=bq.host, bigquery_write_emulator_host=emulators.bigquery_write_host(bq),
                allow_faults=allow_faults)
    info = StackInfo(str(state_dir), s.__dict__, {k: v.to_dict() for k, v in handles.items()},
                     max_delivery_attempts, threads, ephemeral)
    info.save()
    try:
        clients = info.activate()
        create_tables(clients.bq, s)
        env = function_servers.function_env(info)
        with ThreadPoolExecutor(max_workers=3) as pool:
            started = pool.map(lambda n: function_servers.start_function(n, state_dir, env, threads), topo.FUNCTIONS)
            fn_handles = dict(zip(topo.FUNCTIONS, started, strict=True))
        info.services.update({k: v.to_dict() for k, v in fn_handles.items()})
        info.save()
        provision_topology(info)
    except BaseException:
        _down_locked(state_dir)
        raise
    return info
