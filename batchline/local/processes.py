"""Start, health-check and stop the local emulators as real child processes on loopback.

Used by the ``batchline local up/down/status`` CLI and by pytest session fixtures. Three services:

* Pub/Sub  - the official Java emulator (Debian package ``google-cloud-cli-pubsub-emulator``),
  started through its direct launcher, which is much faster than ``gcloud beta emulators``.
* Firestore - the official Java emulator (``google-cloud-cli-firestore-emulator``), started with
  ``java -cp cloud-firestore-emulator.jar`` directly so the recorded pid *is* the JVM (the shipped
  bash wrapper does not ``exec``).
* BigQuery - PyPI ``bqemulator`` (DuckDB-backed) through :mod:`batchline.local.bq_launcher`,
  which makes it start offline and accept the official client's ``*/*`` upload parts.

Design choices, and why:

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
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
DEFAULT_PROJECT = "batchline-local"
DEFAULT_TIMEOUT_S = 60.0

PUBSUB = "pubsub"
FIRESTORE = "firestore"
BIGQUERY = "bigquery"

PUBSUB_DEB = "google-cloud-cli-pubsub-emulator"
FIRESTORE_DEB = "google-cloud-cli-firestore-emulator"
JAVA_DEB = "default-jre-headless"

#: Where the Debian packages put the SDK; checked before asking ``gcloud`` (which takes ~1 s).
KNOWN_SDK_ROOTS = ("/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk")
PUBSUB_LAUNCHER = "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
FIRESTORE_JAR = "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
FIRESTORE_MAIN = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"

#: Children started by this Python process, kept so they can be reaped (no zombies in pytest).
_CHILDREN: dict[int, subprocess.Popen] = {}


class EmulatorNotInstalled(RuntimeError):
    """An emulator binary (or Java) is missing; the message names the Debian package to install."""


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


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgid, start_ticks) of ``pid`` from /proc, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[2]), int(rest[19])


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child, so it does not linger as a zombie."""
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        _CHILDREN.pop(pid, None)


def _is_ours(pid: int, start_ticks: int) -> bool:
    """True if ``pid`` is alive (not a zombie) and is the same process that we started."""
    _reap(pid)
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X") and st[2] == start_ticks


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
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
# Generic process management
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
        if _port_in_use(p):
            raise StartupError(f"{name}: port {LOOPBACK}:{p} is already in use (another emulator?)")
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    t0 = time.monotonic()
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=state_dir,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    st = _proc_stat(proc.pid)
    handle = ServiceHandle(
        name=name,
        pid=proc.pid,
        pgid=proc.pid,
        start_ticks=st[2] if st else -1,
        port=port,
        host=f"{LOOPBACK}:{port}",
        log_path=str(log_path),
        extra_ports=dict(extra_ports or {}),
        argv=list(argv),
        project=project,
    )
    deadline = t0 + timeout_s
    while True:
        if proc.poll() is not None:
            _CHILDREN.pop(proc.pid, None)
            raise StartupError(
                f"{name} exited with code {proc.returncode} before it was ready; log {log_path}:\n{_log_tail(log_path)}"
            )
        try:
            ok = ready()
        except Exception:  # noqa: BLE001 - not ready yet, whatever the client says
            ok = False
        if ok and proc.poll() is None:
            break
        if time.monotonic() > deadline:
            stop(handle)
            raise StartupError(f"{name} not ready after {timeout_s:.0f}s; log {log_path}:\n{_log_tail(log_path)}")
        time.sleep(0.1)
    handle.startup_s = round(time.monotonic() - t0, 3)
    pf = pid_file(state_dir, name)
    pf.parent.mkdir(parents=True, exist_ok=True)
    pf.write_text(json.dumps(handle.to_dict(), indent=2))
    return handle


def is_alive(handle: ServiceHandle | Mapping) -> bool:
    """True if the recorded process is still running (same pid *and* same start time)."""
    h = handle if isinstance(handle, ServiceHandle) else ServiceHandle.from_dict(handle)
    return _is_ours(h.pid, h.start_ticks)


def stop(handle_or_pid: ServiceHandle | Mapping | int, timeout_s: float = 10.0) -> bool:
    """Stop a service: SIGTERM its process group, then SIGKILL after ``timeout_s``. Idempotent.

    Only the recorded group is signalled, and only if its leader is still the process we started
    (start time check), so a stale state file can never kill an unrelated program. A bare ``int``
    pid is accepted only if that pid leads its own process group (as our services do).
    Returns True if something was signalled, False if it was already gone.
    """
    if isinstance(handle_or_pid, int):
        st = _proc_stat(handle_or_pid)
        if st is None or st[0] in ("Z", "X") or st[1] != handle_or_pid:
            _reap(handle_or_pid)
            return False
        pid, pgid = handle_or_pid, handle_or_pid
    else:
        h = handle_or_pid if isinstance(handle_or_pid, ServiceHandle) else ServiceHandle.from_dict(handle_or_pid)
        if not _is_ours(h.pid, h.start_ticks):
            return False
        pid, pgid = h.pid, h.pgid
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            _reap(pid)
            if not _group_members(pgid):
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
# Readiness probes (real requests; short timeouts; False on any connection problem)
# --------------------------------------------------------------------------------------------


def _http_get(url: str, timeout_s: float = 1.0) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return None


def pubsub_ready(host: str, project: str = DEFAULT_PROJECT) -> bool:
    """Pub/Sub answers the REST ``projects.topics.list`` call (served on the gRPC port too)."""
    r = _http_get(f"http://{host}/v1/projects/{project}/topics")
    return r is not None and r[0] == 200


def firestore_ready(host: str) -> bool:
    """The Firestore emulator answers ``GET /`` with ``Ok``."""
    r = _http_get(f"http://{host}/")
    return r is not None and r[0] == 200 and r[1].strip() == b"Ok"


def bigquery_ready(host: str, project: str = DEFAULT_PROJECT) -> bool:
    """bqemulator answers ``datasets.list`` (REST) with a ``bigquery#datasetList``."""
    r = _http_get(f"http://{host}/bigquery/v2/projects/{project}/datasets")
    return r is not None and r[0] == 200 and b"datasetList" in r[1]


# --------------------------------------------------------------------------------------------
# The three services
# --------------------------------------------------------------------------------------------


def sdk_root() -> Path:
    """Root of the Google Cloud SDK: ``$CLOUDSDK_ROOT_DIR``, the Debian path, else ask ``gcloud``."""
    candidates = [os.environ.get("CLOUDSDK_ROOT_DIR", ""), *KNOWN_SDK_ROOTS]
    for c in candidates:
        if c and (Path(c) / "platform").is_dir():
            return Path(c)
    gcloud = shutil.which("gcloud")
    if gcloud:
        try:
            out = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and Path(out).is_dir():
            return Path(out)
    raise EmulatorNotInstalled(
        "Google Cloud SDK not found (looked at $CLOUDSDK_ROOT_DIR, "
        f"{', '.join(KNOWN_SDK_ROOTS)} and `gcloud info`): install the Debian package google-cloud-cli"
    )


def _sdk_file(relative: str, package: str) -> Path:
    try:
        root = sdk_root()
    except EmulatorNotInstalled as exc:
        raise EmulatorNotInstalled(f"{exc}, then {package}") from None
    path = root / relative
    if not path.is_file():
        raise EmulatorNotInstalled(
            f"{path} not found: install the Debian package {package} (apt-get install {package})"
        )
    return path


def java_binary() -> str:
    """The ``java`` to run the emulators with: ``$JAVA_HOME/bin/java`` or ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise EmulatorNotInstalled(
            f"java not found (the Pub/Sub and Firestore emulators need Java 11+): "
            f"install the Debian package {JAVA_DEB} (apt-get install {JAVA_DEB})"
        )
    return found


def start_pubsub(
    state_dir: Path | str,
    port: int | None = None,
    project: str = DEFAULT_PROJECT,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ServiceHandle:
    """Start the Pub/Sub emulator (in memory; it has no persistence) on 127.0.0.1:``port``."""
    launcher = _sdk_file(PUBSUB_LAUNCHER, PUBSUB_DEB)
    java = java_binary()
    port = port or free_port()
    host = f"{LOOPBACK}:{port}"
    # The launcher script ends in `exec java` (JAVA_HOME or PATH), so the recorded pid is the JVM.
    env = {} if os.environ.get("JAVA_HOME") else {"PATH": f"{Path(java).parent}:{os.environ.get('PATH', '')}"}
    return start_process(
        PUBSUB,
        [str(launcher), f"--host={LOOPBACK}", f"--port={port}"],
        state_dir,
        env,
        lambda: pubsub_ready(host, project),
        timeout_s,
        port=port,
        project=project,
    )


def start_firestore(
    state_dir: Path | str,
    port: int | None = None,
    project: str = DEFAULT_PROJECT,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ServiceHandle:
    """Start the Firestore emulator (native mode, in memory) on 127.0.0.1:``port``."""
    jar = _sdk_file(FIRESTORE_JAR, FIRESTORE_DEB)
    java = java_binary()
    port = port or free_port()
    host = f"{LOOPBACK}:{port}"
    argv = [java, "-Duser.language=en", "-cp", str(jar), FIRESTORE_MAIN, "start",
            "--host", LOOPBACK, "--port", str(port)]  # fmt: skip
    return start_process(
        FIRESTORE, argv, state_dir, {}, lambda: firestore_ready(host), timeout_s,
        port=port, project=project,
    )  # fmt: skip


def start_bigquery(
    state_dir: Path | str,
    port: int | None = None,
    grpc_port: int | None = None,
    project: str = DEFAULT_PROJECT,
    persistent: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ServiceHandle:
    """Start bqemulator (REST on ``port``, gRPC on ``grpc_port``) through ``bq_launcher``.

    In memory by default; ``persistent=True`` keeps the DuckDB file in ``<state_dir>/bigquery``.
    The launcher is run as a script with this interpreter, so the venv's bqemulator is used and
    no ``PYTHONPATH`` is needed.
    """
    try:
        import bqemulator  # noqa: F401
    except ImportError:
        raise EmulatorNotInstalled(
            f"bqemulator is not installed in {sys.executable}: make install"
        ) from None
    port = port or free_port()
    grpc_port = grpc_port or free_port()
    while grpc_port == port:
        grpc_port = free_port()
    host = f"{LOOPBACK}:{port}"
    launcher = Path(__file__).with_name("bq_launcher.py")
    argv = [sys.executable, str(launcher), "start",
            "--rest-host", LOOPBACK, "--rest-port", str(port),
            "--grpc-host", LOOPBACK, "--grpc-port", str(grpc_port),
            "--project", project, "--log-format", "json", "--log-level", "warning"]  # fmt: skip
    if persistent:
        data_dir = Path(state_dir) / "bigquery"
        data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--persistent", "--data-dir", str(data_dir)]
    else:
        argv += ["--ephemeral"]
    return start_process(
        BIGQUERY, argv, state_dir, {}, lambda: bigquery_ready(host, project), timeout_s,
        port=port, extra_ports={"grpc": grpc_port}, project=project,
    )  # fmt: skip


def bigquery_write_host(handle: ServiceHandle) -> str:
    """host:port of bqemulator's gRPC side (the Storage Write API), for BIGQUERY_WRITE_EMULATOR_HOST."""
    return f"{LOOPBACK}:{handle.extra_ports['grpc']}"


def env_for_clients(
    pubsub: ServiceHandle | None = None,
    firestore: ServiceHandle | None = None,
    bigquery: ServiceHandle | None = None,
) -> dict[str, str]:
    """Environment that points the clients at the emulators.

    The Pub/Sub and Firestore libraries read their ``*_EMULATOR_HOST`` themselves; BigQuery has no
    such convention, so ``BIGQUERY_EMULATOR_HOST`` is ours (see ``batchline.settings``): the REST
    host:port to use as ``api_endpoint="http://" + host``; ``BIGQUERY_WRITE_EMULATOR_HOST`` is the
    gRPC host:port of its Storage Write API.
    """
    env: dict[str, str] = {}
    if pubsub is not None:
        env["PUBSUB_EMULATOR_HOST"] = pubsub.host
    if firestore is not None:
        env["FIRESTORE_EMULATOR_HOST"] = firestore.host
    if bigquery is not None:
        env["BIGQUERY_EMULATOR_HOST"] = bigquery.host
        if "grpc" in bigquery.extra_ports:
            env["BIGQUERY_WRITE_EMULATOR_HOST"] = bigquery_write_host(bigquery)
    return env
