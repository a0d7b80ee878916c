"""Shared by the bench scripts: the local stack, load average, percentiles, result files.

Not production code and not a test: the scripts print and write figures, they never assert them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from batchline.local import stack as local_stack

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def loadavg() -> list[float]:
    """The 1/5/15-minute load averages: the machine is shared, so every figure carries them."""
    return [round(x, 2) for x in os.getloadavg()]


def other_tests_running() -> list[int]:
    """Pids of other test sessions (a command line mentioning pytest), this process excluded."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"pytest" in cmd:
            out.append(int(d.name))
    return out


def wait_quiet(max_load: float = 2.5, poll_s: float = 15.0, give_up_s: float | None = None) -> dict:
    """Before a run: wait until no other test session runs and the 1-minute load is below `max_load`,
    polling every `poll_s`; after `give_up_s` (default $BENCH_WAIT_GIVE_UP_S, else 900) run anyway.
    Returns what was waited for (goes in the JSON)."""
    if give_up_s is None:
        give_up_s = float(os.environ.get("BENCH_WAIT_GIVE_UP_S", "900"))
    t0 = time.monotonic()
    while True:
        tests, load = other_tests_running(), os.getloadavg()[0]
        quiet = not tests and load < max_load
        if quiet or time.monotonic() - t0 >= give_up_s:
            info = {"waited_s": round(time.monotonic() - t0, 1), "give_up_s": give_up_s, "quiet": quiet,
                    "load_1m": round(load, 2),
                    "tests_running": len(tests)}
            print(f"wait_quiet: {info}", flush=True)
            return info
        time.sleep(poll_s)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True,
                              text=True, check=False, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "git": git_rev()}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank-interpolated percentile (statistics.quantiles, inclusive); None when empty."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[int(q) - 1]


def r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


@contextlib.contextmanager
def stack(state_dir: str | None, threads: int = 4) -> Iterator[local_stack.StackInfo]:
    """A running local stack: reuse the one recorded in `state_dir` if it answers (left running),
    else start one (in a temporary directory when none is given) and stop it afterwards."""
    if state_dir:
        # a loaded machine can make one status probe miss: look again before touching a given stack
        for _ in range(4):
            if local_stack.is_up(state_dir):
                yield local_stack.load(state_dir)
                return
            if not (Path(state_dir) / "stack.json").exists():
                break
            time.sleep(5)
        if (Path(state_dir) / "stack.json").exists():
            # a given, recorded stack that is not whole: restart only what is dead, keep the rest (the
            # main table's rows), and leave it running for the next script
            print(f"stack in {state_dir} not answering: healing it (reuse=True)", flush=True)
            yield local_stack.up(state_dir, threads=threads, reuse=True)
            return
    tmp = None
    if not state_dir:
        tmp = tempfile.TemporaryDirectory(prefix="batchline-bench-")
        state_dir = tmp.name
    info = local_stack.up(state_dir, threads=threads, reuse=False)
    try:
        yield info
    finally:
        local_stack.down(state_dir)
        if tmp is not None:
            tmp.cleanup()


def write_json(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_results(prefix: str) -> list[dict]:
    out = []
    for p in sorted(RESULTS_DIR.glob(f"{prefix}*.json")):
        try:
            out.append({**json.loads(p.read_text()), "_file": p.name})
        except ValueError:
            continue
    return out
