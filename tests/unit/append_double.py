"""An in-memory stand-in for one AppendRows bidi call, for the focused unit tests of
batchline/adapters/write_stream.py and write_api.py (the real emulator is in tests/stack/test_write_stream.py).

Like the real call, it reads requests from its iterator on a thread of its own and answers each with
exactly one response, in order; `answer(request)` decides the response (or raises to end the call, as
an RPC error would)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from google.cloud.bigquery_storage_v1 import types

_END = object()


def ok(_request=None):
    return types.AppendRowsResponse(append_result=types.AppendRowsResponse.AppendResult())


class FakeCall:
    def __init__(self, requests, metadata, answer: Callable):
        self.metadata = metadata
        self.requests: list = []
        self._answer = answer
        self._out: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = False
        threading.Thread(target=self._serve, args=(requests,), daemon=True).start()

    def _serve(self, requests) -> None:
        try:
            for r in requests:
                self.requests.append(r)
                self._out.put(self._answer(r))
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, as a failed RPC would be
            self._out.put(exc)
        self._out.put(_END)

    def __iter__(self):
        while True:
            item = self._out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def cancel(self) -> None:
        self.cancelled = True
        self._out.put(RuntimeError("cancelled"))


class FakeOpener:
    """open_call for SharedAppendStream / StagingAppender: records every call it opened."""

    def __init__(self, answer: Callable = ok):
        self.answer = answer
        self.calls: list[FakeCall] = []

    def __call__(self, requests, metadata) -> FakeCall:
        call = FakeCall(requests, metadata, self.answer)
        self.calls.append(call)
        return call
