"""Fail early, with the package to install, when the local stack cannot run on this machine.

The Pub/Sub and Firestore emulators come from Debian packages (gcloud components) and need Java;
they cannot be pip-installed, so `make run` / `make test` check for them before anything starts.
"""

from __future__ import annotations

import sys

from batchline.local import processes as procs


def problems() -> list[str]:
    found = []
    for check in (procs.java_binary,
                  lambda: procs._sdk_file(procs.PUBSUB_LAUNCHER, procs.PUBSUB_DEB),
                  lambda: procs._sdk_file(procs.FIRESTORE_JAR, procs.FIRESTORE_DEB)):
        try:
            check()
        except procs.EmulatorNotInstalled as exc:
            found.append(str(exc))
    try:
        import bqemulator  # noqa: F401
    except ImportError:
        found.append("bqemulator is not installed: make install")
    return found


def main() -> int:
    found = problems()
    for p in found:
        print(f"batchline: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
