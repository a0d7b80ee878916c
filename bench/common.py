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
from collections.abc import Iterator
from pathlib import Path

from batchline.local import stack as local_stack

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def loadavg() -> list[float]:
    """The 1/5/15-minute load averages: the machine is shared, so every figure carries them."""
    return [round(x, 2) for x in os.getloadavg()]


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
    if state_dir and local_stack.is_up(state_dir):
        yield local_stack.load(state_dir)
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
