"""Start, health-check and stop the local stack's services as real child processes on loopback
(the emulators of batchline.local.emulators, the functions, the scheduler).

Used by the ``batchline local up/down/status`` CLI and by pytest session fixtures. Design choices, and why:

* Every service runs in its own session (``start_new_session=True``) so ``stop`` can signal the
  whole process group (JVM helper threads/children included) and so a Ctrl-C in the terminal that
  ran ``batchline local up`` does not take the emulators down with it.
* A :class:`ServiceHandle` is plain JSON (``to_dict``/``from_dict``) and is also written to
  ``<state_dir>/run/<name>.json``: ``down`` in a later command can stop what ``up`` started.
* A pid alone is not an identity: after a reboot or a long time the pid may belong to another
  program. The handle records the process start time from ``/proc/<pid>/stat``; ``stop`` and
  ``is_alive`` act only if the pid still has that start time. (Linux only, like the stack.)
* Readiness is a real request over a real connection (not "the port accepts TCP"), and start-up
  fails fast with the log tail when the process exits or the deadline passes.
* Every service binds 127.0.0.1 only; ports default to free ephemeral ports so test sessions and
  a running local stack never collide.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
DEFAULT_PROJECT = "batchline-local"
DEFAULT_TIMEOUT_S = 60.0

#: Children started by this Python process, kept so they can be reaped (no zombies in pytest).
_CHILDREN: dict[int, subprocess.Popen] = {}


class StartupError(RuntimeError):
    """A service exited or did not become ready in time; the message carries its log tail."""


@dataclass
class ServiceHandle:
    """What is needed to reach, check and stop one running service, across processes.

    ``host`` is ``"127.0.0.1:<port>"`` - the value for the ``*_EMULATOR_HOST`` variables.
    ``start_ticks`` is field 22 of ``/proc/<pid>/stat`` at start; it guards against pid reuse.
    ``pgid`` equals ``pid`` (each service leads its own session).
    """

    name: str
    pid: int
    pgid: int
    start_ticks: int
    port: int
    host: str
    log_path: str
    extra_ports: dict[str, int] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    startup_s: float = 0.0
    project: str = DEFAULT_PROJECT

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> ServiceHandle:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["extra_ports"] = {str(k): int(v) for k, v in dict(known.get("extra_ports", {})).items()}
        return cls(**known)

    @property
    def url(self) -> str:
        return f"http://{self.host}"


# --------------------------------------------------------------------------------------------
# Ports and /proc helpers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the OS picks it; tiny race until the service binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgid, start_ticks) of ``pid`` from /proc, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[2]), int(rest[19])


def reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child, so it does not linger as a zombie."""
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        _CHILDREN.pop(pid, None)


def still_running(pid: int, start_ticks: int) -> bool:
    """True if ``pid`` is alive (not a zombie) and is the same process that we started."""
    reap(pid)
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X") and st[2] == start_ticks


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None and st[1] == pgid and st[0] not in ("Z", "X"):
                members.append(int(entry))
    return members


def _log_tail(path: Path | str, lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# Starting and stopping
# --------------------------------------------------------------------------------------------


def pid_file(state_dir: Path | str, name: str) -> Path:
    """Where the handle of service ``name`` is recorded (JSON of :meth:`ServiceHandle.to_dict`)."""
    return Path(state_dir) / "run" / f"{name}.json"


def read_pid_file(state_dir: Path | str, name: str) -> ServiceHandle | None:
    """The recorded handle of ``name``, or None if none was recorded (or the file is unreadable)."""
    path = pid_file(state_dir, name)
    try:
        return ServiceHandle.from_dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None


def start_process(
    name: str,
    argv: list[str],
    state_dir: Path | str,
    env: Mapping[str, str] | None,
    ready: Callable[[], bool],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    port: int,
    extra_ports: Mapping[str, int] | None = None,
    project: str = DEFAULT_PROJECT,
) -> ServiceHandle:
    """Start ``argv`` in a new session, log to ``<state_dir>/logs/<name>.log``, wait for ``ready()``.

    ``env`` is added to this process's environment. ``ready`` is polled (it should do one real
    request with a short timeout and return False on connection errors). On exit or timeout the
    process group is stopped and :class:`StartupError` carries the log tail. The handle is also
    written to :func:`pid_file`.
    """
    state_dir = Path(state_dir)
    for p in (port, *(extra_ports or {}).values()):
        if port_in_use(p):
            raise StartupError(f"{name}: port {LOOPBACK}:{p} is already in use (another emulator?)")
    t0 = time.monotonic()
    proc, log_path = _spawn(name, argv, state_dir, env)
    st = proc_stat(proc.pid)
    handle = ServiceHandle(name=name, pid=proc.pid, pgid=proc.pid, start_ticks=st[2] if st else -1, port=port,
                           host=f"{LOOPBACK}:{port}", log_path=str(log_path), extra_ports=dict(extra_ports or {}),
                           argv=list(argv), project=project)
    _wait_ready(proc, handle, ready, t0 + timeout_s, timeout_s)
    handle.startup_s = round(time.monotonic() - t0, 3)
    pf = pid_file(state_dir, name)
    pf.parent.mkdir(parents=True, exist_ok=True)
    pf.write_text(json.dumps(handle.to_dict(), indent=2))
    return handle


def _spawn(name: str, argv: list[str], state_dir: Path, env: Mapping[str, str] | None
           ) -> tuple[subprocess.Popen, Path]:
    """Run ``argv`` in its own session in ``state_dir``, appending its output to its log."""
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=state_dir,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc, log_path


def _wait_ready(proc: subprocess.Popen, handle: ServiceHandle, ready: Callable[[], bool], deadline: float,
                timeout_s: float) -> None:
    """Poll ``ready()`` until it holds while the process runs; StartupError (with the log tail) when the
    process exits first or ``deadline`` passes (the process group is stopped then)."""
    while True:
        if proc.poll() is not None:
            _CHILDREN.pop(proc.pid, None)
            raise StartupError(f"{handle.name} exited with code {proc.returncode} before it was ready; "
                               f"log {handle.log_path}:\n{_log_tail(handle.log_path)}")
        try:
            ok = ready()
        except Exception:  # noqa: BLE001 - not ready yet, whatever the client says
            ok = False
        if ok and proc.poll() is None:
            return
        if time.monotonic() > deadline:
            stop(handle)
            raise StartupError(f"{handle.name} not ready after {timeout_s:.0f}s; "
                               f"log {handle.log_path}:\n{_log_tail(handle.log_path)}")
        time.sleep(0.1)


def is_alive(handle: ServiceHandle | Mapping) -> bool:
    """True if the recorded process is still running (same pid *and* same start time)."""
    h = handle if isinstance(handle, ServiceHandle) else ServiceHandle.from_dict(handle)
    return still_running(h.pid, h.start_ticks)


def stop(handle_or_pid: ServiceHandle | Mapping | int, timeout_s: float = 10.0) -> bool:
    """Stop a service: SIGTERM its process group, then SIGKILL after ``timeout_s``. Idempotent.

    Only the recorded group is signalled, and only if its leader is still the process we started
    (start time check), so a stale state file can never kill an unrelated program. A bare ``int``
    pid is accepted only if that pid leads its own process group (as our services do).
    Returns True if something was signalled, False if it was already gone.
    """
    if isinstance(handle_or_pid, int):
        st = proc_stat(handle_or_pid)
        if st is None or st[0] in ("Z", "X") or st[1] != handle_or_pid:
            reap(handle_or_pid)
            return False
        pid, pgid = handle_or_pid, handle_or_pid
    else:
        h = handle_or_pid if isinstance(handle_or_pid, ServiceHandle) else ServiceHandle.from_dict(handle_or_pid)
        if not still_running(h.pid, h.start_ticks):
            return False
        pid, pgid = h.pid, h.pgid
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            reap(pid)
            if not group_members(pgid):
                _wait_reaped(pid, deadline)
                return True
            time.sleep(0.05)
    _wait_reaped(pid, time.monotonic() + 5.0)
    return True


def _wait_reaped(pid: int, deadline: float) -> None:
    """If ``pid`` is our child, wait for its exit status (so no zombie is left behind).

    A multi-threaded leader (a JVM) shows as a zombie while its other threads are still exiting;
    ``waitpid`` only succeeds after that, hence a bounded wait rather than one poll.
    """
    proc = _CHILDREN.get(pid)
    if proc is None:
        return
    try:
        proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return
    _CHILDREN.pop(pid, None)


# --------------------------------------------------------------------------------------------
# The probe every readiness check makes
# --------------------------------------------------------------------------------------------


def http_get(url: str, timeout_s: float = 1.0) -> tuple[int, bytes] | None:
    """(status, body) of one GET on loopback, or None when nothing answered (the readiness probes)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return None

