"""Fail early, with the package to install, when the local stack cannot run on this machine.

The Pub/Sub and Firestore emulators come from Debian packages (gcloud components) and need Java;
they cannot be pip-installed, so `make run` / `make test` check for them before anything starts.
"""

from __future__ import annotations

import sys

from batchline.local import emulators


def problems() -> list[str]:
    found = []
    for check in (emulators.java_binary,
                  lambda: emulators.sdk_file(emulators.PUBSUB_LAUNCHER, emulators.PUBSUB_DEB),
                  lambda: emulators.sdk_file(emulators.FIRESTORE_JAR, emulators.FIRESTORE_DEB)):
        try:
            check()
        except emulators.EmulatorNotInstalled as exc:
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
