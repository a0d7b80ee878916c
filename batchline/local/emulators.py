"""The three emulators of the local stack, started as real child processes on loopback
(batchline.local.processes), each with a readiness probe that makes a real request.

* Pub/Sub  - the official Java emulator (Debian package ``google-cloud-cli-pubsub-emulator``),
  started through its direct launcher, which is much faster than ``gcloud beta emulators``.
* Firestore - the official Java emulator (``google-cloud-cli-firestore-emulator``), started with
  ``java -cp cloud-firestore-emulator.jar`` directly so the recorded pid *is* the JVM (the shipped
  bash wrapper does not ``exec``).
* BigQuery - PyPI ``bqemulator`` (DuckDB-backed) through :mod:`batchline.local.bq_launcher`,
  which makes it start offline and accept the official client's ``*/*`` upload parts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from batchline.local.processes import (
    DEFAULT_PROJECT,
    DEFAULT_TIMEOUT_S,
    LOOPBACK,
    ServiceHandle,
    free_port,
    http_get,
    start_process,
)

PUBSUB = "pubsub"
FIRESTORE = "firestore"
BIGQUERY = "bigquery"
EMULATORS = (PUBSUB, FIRESTORE, BIGQUERY)

PUBSUB_DEB = "google-cloud-cli-pubsub-emulator"
FIRESTORE_DEB = "google-cloud-cli-firestore-emulator"
JAVA_DEB = "default-jre-headless"

#: Where the Debian packages put the SDK; checked before asking ``gcloud`` (which takes ~1 s).
KNOWN_SDK_ROOTS = ("/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk")
PUBSUB_LAUNCHER = "platform/pubsub-emulator/bin/cloud-pubsub-emulator"
FIRESTORE_JAR = "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
FIRESTORE_MAIN = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"


class EmulatorNotInstalled(RuntimeError):
    """An emulator binary (or Java) is missing; the message names the Debian package to install."""


# --------------------------------------------------------------------------------------------
# Readiness probes (real requests; short timeouts; False on any connection problem)
# --------------------------------------------------------------------------------------------


def pubsub_ready(host: str, project: str = DEFAULT_PROJECT) -> bool:
    """Pub/Sub answers the REST ``projects.topics.list`` call (served on the gRPC port too)."""
    r = http_get(f"http://{host}/v1/projects/{project}/topics")
    return r is not None and r[0] == 200


def firestore_ready(host: str) -> bool:
    """The Firestore emulator answers ``GET /`` with ``Ok``."""
    r = http_get(f"http://{host}/")
    return r is not None and r[0] == 200 and r[1].strip() == b"Ok"


def bigquery_ready(host: str, project: str = DEFAULT_PROJECT) -> bool:
    """bqemulator answers ``datasets.list`` (REST) with a ``bigquery#datasetList``."""
    r = http_get(f"http://{host}/bigquery/v2/projects/{project}/datasets")
    return r is not None and r[0] == 200 and b"datasetList" in r[1]


def answering(name: str, handle: ServiceHandle) -> bool:
    """Emulator `name` answers its readiness probe at the handle's address."""
    if name == PUBSUB:
        return pubsub_ready(handle.host, handle.project)
    if name == FIRESTORE:
        return firestore_ready(handle.host)
    return bigquery_ready(handle.host, handle.project)


# --------------------------------------------------------------------------------------------
# What they need installed
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


def sdk_file(relative: str, package: str) -> Path:
    """A file of the SDK that Debian package `package` installs; EmulatorNotInstalled names it if missing."""
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


# --------------------------------------------------------------------------------------------
# Starting them
# --------------------------------------------------------------------------------------------


def start_pubsub(state_dir: Path | str, port: int | None = None, project: str = DEFAULT_PROJECT,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> ServiceHandle:
    """Start the Pub/Sub emulator (in memory; it has no persistence) on 127.0.0.1:``port``."""
    launcher, java, port = sdk_file(PUBSUB_LAUNCHER, PUBSUB_DEB), java_binary(), port or free_port()
    # The launcher script ends in `exec java` (JAVA_HOME or PATH), so the recorded pid is the JVM.
    env = {} if os.environ.get("JAVA_HOME") else {"PATH": f"{Path(java).parent}:{os.environ.get('PATH', '')}"}
    argv = [str(launcher), f"--host={LOOPBACK}", f"--port={port}"]
    return start_process(PUBSUB, argv, state_dir, env, lambda: pubsub_ready(f"{LOOPBACK}:{port}", project),
                         timeout_s, port=port, project=project)


def start_firestore(state_dir: Path | str, port: int | None = None, project: str = DEFAULT_PROJECT,
                    timeout_s: float = DEFAULT_TIMEOUT_S) -> ServiceHandle:
    """Start the Firestore emulator (native mode, in memory) on 127.0.0.1:``port``."""
    jar, java, port = sdk_file(FIRESTORE_JAR, FIRESTORE_DEB), java_binary(), port or free_port()
    argv = [java, "-Duser.language=en", "-cp", str(jar), FIRESTORE_MAIN, "start",
            "--host", LOOPBACK, "--port", str(port)]
    return start_process(FIRESTORE, argv, state_dir, {}, lambda: firestore_ready(f"{LOOPBACK}:{port}"),
                         timeout_s, port=port, project=project)


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


STARTERS = {PUBSUB: start_pubsub, FIRESTORE: start_firestore, BIGQUERY: start_bigquery}


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
