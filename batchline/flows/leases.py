"""Keeps a lease alive while its holder works: the consolidation's (lifecycle.LEASE_TTL) and the
control request's (control_lifecycle.CONTROL_LEASE).

A MERGE or a start can outlast a short lease, and a long lease leaves a crashed holder's work waiting:
so the lease is short and renewed from a background thread. A renewal that finds the lease taken sets
`lost`; every write the holder makes afterwards is conditional on the lease and fails, so losing the
lease can delay the work but never let two holders both write a result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from batchline.adapters.batch_store import BatchStore
from batchline.domain import lifecycle as lc
from batchline.logs import log_event


class KeepAlive:
    """Calls `renew` every `every_s` until stopped; a False answer means the lease is another's."""

    def __init__(self, renew: Callable[[], bool], every_s: float, name: str, lost_event: str, **fields):
        self.renew, self.every_s, self.lost_event, self.fields = renew, every_s, lost_event, fields
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                if not self.renew():
                    self.lost = True
                    log_event(self.lost_event, severity="ERROR", **self.fields,
                              message="another delivery holds this lease now; this one stops at its next write")
                    return
            except Exception as exc:  # noqa: BLE001 - a failed renewal is retried next tick; the TTL bounds it
                log_event("lease_renewal_failed", severity="WARNING", error=str(exc), **self.fields)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class LeaseKeeper(KeepAlive):
    """The consolidation lease of one batch delivery."""

    def __init__(self, store: BatchStore, batch_id: str, token: str,
                 every_s: float = lc.LEASE_TTL.total_seconds() / 4):
        super().__init__(lambda: store.renew_lease(batch_id, token), every_s, f"lease-{batch_id}",
                         "consolidation_lease_lost", batch_id=batch_id)
