"""The three functions of the local stack, each served by functions-framework (gunicorn, as in
production) from functions/<name>/main.py, with the settings and emulator addresses of its stack."""

from __future__ import annotations

import sys
from pathlib import Path

from batchline import topology as topo
from batchline.local import processes as procs
from batchline.local.stack_record import REPO_ROOT, StackInfo

FUNCTION_SOURCES = {name: REPO_ROOT / "functions" / name / "main.py" for name in topo.FUNCTIONS}
READY_TIMEOUT_S = 60.0


def answering(handle: procs.ServiceHandle) -> bool:
    """The function answers HTTP at all (any status: it is listening)."""
    return procs.http_get(handle.url + "/") is not None


def function_env(info: StackInfo) -> dict[str, str]:
    """The environment a function of this stack runs with: its settings and the emulators' addresses."""
    return {**info.settings_obj().as_env(), **info.client_env()}


def start_function(name: str, state_dir: Path, env: dict[str, str], threads: int,
                   port: int | None = None) -> procs.ServiceHandle:
    port = port or procs.free_port()
    argv = [sys.executable, "-m", "functions_framework", "--target", name,
            "--source", str(FUNCTION_SOURCES[name]), "--host", procs.LOOPBACK, "--port", str(port)]
    full_env = {**env, "THREADS": str(threads), "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    url = f"http://{procs.LOOPBACK}:{port}/"
    return procs.start_process(name, argv, state_dir, full_env, lambda: procs.http_get(url) is not None,
                               READY_TIMEOUT_S, port=port)
