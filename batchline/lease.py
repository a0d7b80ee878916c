"""Keeps a consolidation lease alive while its holder works (lifecycle.LEASE_TTL).

A MERGE can outlast a short lease, and a long lease leaves a crashed holder's batch waiting: so the
lease is short and renewed from a background thread. A renewal that finds the lease taken sets
`lost`; every write the holder makes afterwards is conditional on the lease and fails, so losing the
lease can delay a batch but never let two holders both write a result.
"""

from __future__ import annotations

import threading

from batchline import lifecycle as lc
from batchline.logs import log_event
from batchline.state import BatchStore


class LeaseKeeper:
    def __init__(self, store: BatchStore, batch_id: str, token: str,
                 every_s: float = lc.LEASE_TTL.total_seconds() / 4):
        self.store, self.batch_id, self.token, self.every_s = store, batch_id, token, every_s
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{batch_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                if not self.store.renew_lease(self.batch_id, self.token):
                    self.lost = True
                    log_event("consolidation_lease_lost", severity="ERROR", batch_id=self.batch_id,
                              message="another delivery holds this batch now; this one stops at its next write")
                    return
            except Exception as exc:  # noqa: BLE001 - a failed renewal is retried next tick; the TTL bounds it
                log_event("lease_renewal_failed", severity="WARNING", batch_id=self.batch_id, error=str(exc))

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
