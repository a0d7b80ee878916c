"""The lease keeper renews while its holder works and says so when the lease was taken."""

from __future__ import annotations

import threading
import time

from batchline.flows.leases import LeaseKeeper


class _Store:
    """A focused double of the one call the keeper makes."""

    def __init__(self, answers: list[bool]):
        self.answers = answers
        self.calls: list[tuple[str, str]] = []
        self.done = threading.Event()

    def renew_lease(self, batch_id: str, token: str) -> bool:
        self.calls.append((batch_id, token))
        answer = self.answers.pop(0) if self.answers else True
        if not self.answers:
            self.done.set()
        return answer


def test_it_renews_the_holders_lease_while_the_holder_works():
    store = _Store([True, True, True])
    with LeaseKeeper(store, "b", "tok", every_s=0.01) as keeper:
        assert store.done.wait(2)
    assert store.calls[:3] == [("b", "tok")] * 3 and not keeper.lost


def test_a_refused_renewal_marks_the_lease_lost_and_stops_renewing():
    store = _Store([True, False])
    with LeaseKeeper(store, "b", "tok", every_s=0.01) as keeper:
        assert store.done.wait(2)
        time.sleep(0.05)
    assert keeper.lost and len(store.calls) == 2, "nothing renews a lease that belongs to another delivery"


def test_it_stops_when_the_holder_is_done():
    store = _Store([])
    with LeaseKeeper(store, "b", "tok", every_s=10):
        pass
    assert store.calls == []
