"""Restart only what died in a running local stack, as a supervisor would.

* A function (stateless) that is dead, or alive but not answering for `FUNCTION_GRACE_S`, is stopped
  and started again on its recorded port, so the push subscriptions keep pointing at it; if that port
  is taken it gets a new one and the push endpoints are moved (the subscriptions, and the messages
  waiting in them, are kept).
* An emulator is restarted only if its process is dead: what it held in memory is gone, so that
  is announced with a WARNING naming what was lost, and the resources the pipeline needs are
  provisioned again (tables for BigQuery, topics and subscriptions for Pub/Sub). An emulator that
  runs but does not answer is never restarted (that would throw its state away): the caller gets
  `StackUnhealthy` naming its log.

Callers hold the stack lock (`stack_record.exclusive`): `stack.up_with_report` and `supervise`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from batchline import topology as topo
from batchline.local import emulators, function_servers, stack_scheduler
from batchline.local import processes as procs
from batchline.local.provision import create_tables, move_push_endpoints, provision_topology
from batchline.local.stack_record import StackInfo, UpReport, exclusive, load, warn_on_stderr

FUNCTION_GRACE_S = 10.0
EMULATOR_GRACE_S = 30.0
LOST = {
    emulators.PUBSUB: "every topic, subscription and undelivered message (recreated empty)",
    emulators.FIRESTORE: "every batch and item document (earlier batches can no longer be read or consolidated)",
    emulators.BIGQUERY: "every table and row, staging tables included (empty tables recreated)",
}


class StackUnhealthy(RuntimeError):
    """An emulator runs but does not answer; restarting it would discard its state."""


def answering(name: str, handle: procs.ServiceHandle) -> bool:
    if name in emulators.EMULATORS:
        return emulators.answering(name, handle)
    return function_servers.answering(handle)


def _answers_within(name: str, handle: procs.ServiceHandle, grace_s: float) -> bool:
    deadline = time.monotonic() + grace_s
    while True:
        if not procs.is_alive(handle):
            return False
        if answering(name, handle):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def _clear_remains(handle: procs.ServiceHandle, state_dir: Path, wait_s: float = 10.0) -> None:
    """A service whose leader died may leave group members behind (gunicorn workers) or still be
    closing its sockets (a JVM's threads outlive its main thread for a moment): kill what is left of
    its group (only processes running in this stack's folder) and wait for its ports to be free."""
    for pid in procs.group_members(handle.pgid):
        try:
            if Path(os.readlink(f"/proc/{pid}/cwd")) == state_dir.resolve():
                os.kill(pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    deadline = time.monotonic() + wait_s
    ports = [handle.port, *handle.extra_ports.values()]
    while any(procs.port_in_use(p) for p in ports) and time.monotonic() < deadline:
        time.sleep(0.2)


def _restart_emulator(info: StackInfo, name: str, old: procs.ServiceHandle | None) -> procs.ServiceHandle:
    """Start emulator `name` again, on its old ports if they are free (clients keep their address)."""
    state_dir = Path(info.state_dir)
    project = info.settings_obj().project
    kwargs: dict = {"project": project}
    if old is not None:
        _clear_remains(old, state_dir)
        kwargs["port"] = old.port
        if name == emulators.BIGQUERY and "grpc" in old.extra_ports:
            kwargs["grpc_port"] = old.extra_ports["grpc"]
    try:
        return emulators.STARTERS[name](state_dir, **kwargs)
    except procs.StartupError:
        if old is None:
            raise
        return emulators.STARTERS[name](state_dir, project=project)  # its old port is taken: a new one


def heal_locked(info: StackInfo, report: UpReport, notify: Callable[[str], None]) -> None:
    """Bring every recorded service back to alive and answering, restarting only the dead ones."""
    handles = info.handles
    env_changed = False
    for name in emulators.EMULATORS:
        old = handles.get(name)
        if old is not None and procs.is_alive(old):
            if not _answers_within(name, old, EMULATOR_GRACE_S):
                raise StackUnhealthy(
                    f"the {name} emulator (pid {old.pid}) is running but has not answered for "
                    f"{EMULATOR_GRACE_S:.0f} s; not restarting it, which would discard its state. "
                    f"See {old.log_path}; `batchline local down` then `batchline local up` starts afresh")
            report.reused.append(name)
            continue
        new = _restart_emulator(info, name, old)
        was = f"pid {old.pid}" if old else "not recorded"
        notify(f"WARNING: the {name} emulator ({was}) had died; restarted it as pid {new.pid} on port {new.port}. "
               f"Its in-memory state is GONE: {LOST[name]}")
        report.restarted.append(name)
        report.state_lost.append(name)
        env_changed |= old is None or new.host != old.host or new.extra_ports != old.extra_ports
        info.services[name] = new.to_dict()
        if name == emulators.BIGQUERY:
            info.settings["bigquery_emulator_host"] = new.host
            info.settings["bigquery_write_emulator_host"] = emulators.bigquery_write_host(new)
        info.save()
    if emulators.BIGQUERY in report.state_lost:
        create_tables(info.activate().bq, info.settings_obj())
    moved = _heal_functions(info, report, notify, restart_all=env_changed)
    info.activate()
    if emulators.PUBSUB in report.state_lost:
        provision_topology(info)
    elif moved:
        move_push_endpoints(info, moved)
    stack_scheduler.heal_locked(info, report, notify)


def _heal_functions(info: StackInfo, report: UpReport, notify: Callable[[str], None], *,
                    restart_all: bool) -> list[str]:
    """Restart dead or unanswering functions (all of them if an emulator moved); returns the names
    of those now listening on a different port."""
    state_dir = Path(info.state_dir)
    env = function_servers.function_env(info)
    moved = []
    for name in topo.FUNCTIONS:
        old = info.handles.get(name)
        healthy = old is not None and _answers_within(name, old, FUNCTION_GRACE_S)
        if healthy and not restart_all:
            report.reused.append(name)
            continue
        why = ("an emulator it uses moved" if healthy else
               "was not recorded" if old is None else
               "was not answering" if procs.is_alive(old) else "had died")
        if old is not None:
            procs.stop(old)
            _clear_remains(old, state_dir)
        try:
            new = function_servers.start_function(name, state_dir, env, info.threads, port=old.port if old else None)
        except procs.StartupError:
            if old is None:
                raise
            new = function_servers.start_function(name, state_dir, env, info.threads)
        notify(f"restarted function {name} ({why}; old pid {old.pid if old else '-'}, new pid {new.pid})")
        report.restarted.append(name)
        if old is None or new.port != old.port:
            moved.append(name)
        info.services[name] = new.to_dict()
        info.save()
    return moved


def supervise(state_dir: Path | str, interval_s: float = 2.0, notify: Callable[[str], None] = warn_on_stderr,
              rounds: int | None = None) -> int:
    """Check the stack every `interval_s` and restart what died, until the stack is taken down
    (`batchline local down`) or `rounds` checks were made. Returns the number of restarts."""
    restarts = 0
    n = 0
    while rounds is None or n < rounds:
        n += 1
        with exclusive(state_dir):
            info = load(state_dir)
            if info is None:
                notify(f"no stack recorded in {state_dir}: supervision ends")
                return restarts
            report = UpReport()
            try:
                heal_locked(info, report, notify)
            except StackUnhealthy as exc:  # said every round until someone acts; never restarted blindly
                notify(f"WARNING: {exc}")
            restarts += len(report.restarted)
        if rounds is None or n < rounds:
            time.sleep(interval_s)
    return restarts
