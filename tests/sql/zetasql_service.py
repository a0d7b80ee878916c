"""Google's ZetaSQL analyzer as a local gRPC service, for tests/sql.

`make zetasql` installs the npm package @fivetrandevelopers/zetasql into .zetasql/. It ships the
ZetaSQL local-service server (`lib/zetasql/remote_server*`, one build per OS/arch, started as
`remote_server HOST PORT`) and the protos of its API (`lib/zetasql/protos`). We do not generate
Python files from those protos: at start we compile them with grpcio-tools' bundled protoc into a
FileDescriptorSet, load it into a private DescriptorPool and build the message classes from it, so
nothing generated is committed, imported by path, or able to go stale against the installed server,
and the protos cannot clash with other protobuf modules in the process. The one RPC we need,
`zetasql.local_service.ZetaSqlLocalService/Analyze`, is called as a plain unary-unary method.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[2]
ENV_PACKAGE_DIR = "BATCHLINE_ZETASQL_PACKAGE"  # override: a directory holding the npm package
DEFAULT_PACKAGE_DIR = REPO / ".zetasql" / "node_modules" / "@fivetrandevelopers" / "zetasql"
INSTALL_HINT = "run `make zetasql` (a prerequisite of `make test`) to install it"
SERVICE = "zetasql.local_service.ZetaSqlLocalService"

# The npm package's own launcher (lib/server.js) picks the binary the same way.
_BINARIES = {
    ("Linux", "x86_64"): "remote_server.so",
    ("Linux", "aarch64"): "remote_server_arm.so",
    ("Darwin", "x86_64"): "remote_server",
    ("Darwin", "arm64"): "remote_server_arm",
}


class ZetaSqlUnavailable(RuntimeError):
    """The analyzer is not installed or does not start; the message says what to do."""


class AnalysisError(AssertionError):
    """ZetaSQL rejected a statement: its message, with the statement."""

    def __init__(self, sql: str, message: str):
        super().__init__(f"{message}\n--- statement ---\n{sql}")
        self.sql = sql
        self.message = message


def package_dir() -> Path:
    return Path(os.environ.get(ENV_PACKAGE_DIR) or DEFAULT_PACKAGE_DIR)


def server_binary(pkg: Path) -> Path:
    key = (platform.system(), platform.machine())
    if key not in _BINARIES:
        raise ZetaSqlUnavailable(f"@fivetrandevelopers/zetasql ships no server for {key[0]}/{key[1]}")
    binary = pkg / "lib" / "zetasql" / _BINARIES[key]
    if not binary.is_file():
        raise ZetaSqlUnavailable(f"ZetaSQL analyzer not installed: {binary} is missing; {INSTALL_HINT}")
    return binary


class Protos:
    """The message classes of the local-service API, built from the package's .proto files."""

    def __init__(self, proto_root: Path, workdir: Path):
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
        try:
            import grpc_tools
            from grpc_tools import protoc
        except ImportError as exc:
            raise ZetaSqlUnavailable("grpcio-tools is not installed (the dev extra: make install)") from exc

        if not (proto_root / "local_service.proto").is_file():
            raise ZetaSqlUnavailable(f"{proto_root}/local_service.proto is missing; {INSTALL_HINT}")
        out = workdir / "zetasql_local_service.binpb"
        well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
        rc = protoc.main(["protoc", f"-I{proto_root}", f"-I{well_known}", "--include_imports",
                          f"--descriptor_set_out={out}", "local_service.proto"])
        if rc != 0:
            raise ZetaSqlUnavailable(f"protoc could not compile {proto_root}/local_service.proto (exit {rc})")
        self.pool = descriptor_pool.DescriptorPool()
        for file in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
            self.pool.Add(file)
        self._factory = message_factory

    def message(self, full_name: str):
        return self._factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))

    def enum(self, full_name: str, value_name: str) -> int:
        """The number of an enum value; KeyError (naming it) if this ZetaSQL build lacks it."""
        values = self.pool.FindEnumTypeByName(full_name).values_by_name
        if value_name not in values:
            raise KeyError(f"{full_name}.{value_name} is not in this ZetaSQL build")
        return values[value_name].number


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, have the kernel stop the server if the test process dies
    without running its teardown (SIGKILL, OOM)."""
    if sys.platform == "linux":
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ZetaSqlServer:
    """The server process on a free loopback port, and a channel to it. Use as a context manager:
    the process is stopped on exit, whatever happened inside."""

    def __init__(self, pkg: Path | None = None, start_timeout_s: float = 60.0):
        self.pkg = pkg or package_dir()
        self.binary = server_binary(self.pkg)
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.channel: grpc.Channel | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="batchline-zetasql-")
        self.protos = Protos(self.pkg / "lib" / "zetasql" / "protos", Path(self._tmp.name))
        self._log = Path(self._tmp.name) / "server.log"

    def __enter__(self) -> ZetaSqlServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        port = _free_port()
        with open(self._log, "wb") as log:
            try:
                self.proc = subprocess.Popen([str(self.binary), "127.0.0.1", str(port)],
                                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             preexec_fn=_die_with_parent)
            except OSError as exc:  # wrong arch, missing loader, not executable
                raise ZetaSqlUnavailable(f"cannot run {self.binary}: {exc}") from exc
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise ZetaSqlUnavailable(f"{self.binary} exited with {self.proc.returncode} at start:\n"
                                         f"{self.log_tail()}")
            try:
                grpc.channel_ready_future(self.channel).result(timeout=0.5)
                return
            except grpc.FutureTimeoutError:
                if time.monotonic() > deadline:
                    raise ZetaSqlUnavailable(f"{self.binary} did not listen on port {port} within "
                                             f"{self.start_timeout_s:.0f} s:\n{self.log_tail()}") from None

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._tmp.cleanup()

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self._log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no server output)"

    def analyze(self, request, timeout_s: float = 30.0):
        """Call Analyze; returns the AnalyzeResponse or raises AnalysisError with ZetaSQL's message."""
        resp_cls = self.protos.message("zetasql.local_service.AnalyzeResponse")
        call = self.channel.unary_unary(f"/{SERVICE}/Analyze", request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=resp_cls.FromString)
        try:
            return call(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise AnalysisError(request.sql_statement, exc.details()) from None
            raise  # the server failed, not the statement: never read as a verdict on the SQL


def statement_kind(response) -> str:
    """The resolved statement's node name, e.g. 'resolved_merge_stmt_node', descending through the
    Any* wrappers (CREATE TABLE AS SELECT sits under resolved_create_statement_node)."""
    name = response.WhichOneof("result")
    node = getattr(response, name)
    while node.DESCRIPTOR.name.startswith("Any"):
        name = node.WhichOneof("node")
        node = getattr(node, name)
    return name
