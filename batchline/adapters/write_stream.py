"""One Storage Write API connection per process, shared by every staging append (issue 18, item 2).

Why: Google's best practices ask for one connection to carry as many writes as it can and not to open and
close a stream for many small writes, and concurrent connections are a per-project quota above which
AppendRows fails (docs/staging.md, "One connection per instance"). The worker used to open an AppendRows
stream per item; now every append of a process goes through one bidirectional stream, whatever table it
writes: each request names its table's `_default` stream, and carries the writer schema whenever the
(table, schema) differs from the request before it on this connection, as the AppendRows reference
describes for one connection writing several tables.

What each caller is told (F1): requests leave in the order they are queued, and AppendRows answers each
with exactly one response, in the same order, so the n-th response is the n-th caller's; each caller
waits for its own future. A connection that ends (an RPC error, the server closing it) fails every caller
still waiting, with the reason: none is told success for rows it did not write, and none is told of
another's failure. The next append opens a new connection. A caller that gets no answer in time ends the
connection too (a stream that does not answer is treated as dead).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from batchline.logs import log_event

# A connection idle this long is replaced before the next append instead of trusted: a function
# instance gets no CPU between requests, so its connection may have been closed without it noticing.
MAX_IDLE_S = 120.0
_CLOSE = object()

# (request iterator, metadata) -> the call: iterable of responses, with cancel()
OpenCall = Callable[[Iterator, tuple], object]


class ConnectionLost(RuntimeError):
    """The connection ended before this append was answered."""


class NoAnswer(ConnectionLost):
    """No response in time: the append may or may not have been written (at-least-once, like a retry)."""


def reuse_decision(ended: bool | None, waiting: int, idle_s: float, max_idle_s: float = MAX_IDLE_S) -> str:
    """Whether the next append reuses the current connection: "open" (none, or it ended), "reopen_idle"
    (idle too long and nobody waiting on it) or "reuse". `ended` None means there is no connection."""
    if ended is None or ended:
        return "open"
    if waiting == 0 and idle_s > max_idle_s:
        return "reopen_idle"
    return "reuse"


class AppendConnection:
    """One AppendRows bidi stream: a queue of requests out, a reader thread matching responses to the
    callers' futures in order."""

    def __init__(self, open_call: OpenCall, metadata: tuple, clock: Callable[[], float] = time.monotonic):
        self._cond = threading.Condition()
        self._outbox: deque = deque()
        self._pending: deque[Future] = deque()
        self._ended: BaseException | None = None
        self._clock = clock
        self.last_key: Hashable | None = None  # (write stream, schema) the last request sent named
        self.last_used = clock()
        self._call = open_call(self._request_stream(), metadata)
        threading.Thread(target=self._read, name="append-rows-reader", daemon=True).start()

    @property
    def ended(self) -> bool:
        with self._cond:
            return self._ended is not None

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._pending)

    def idle_s(self) -> float:
        return self._clock() - self.last_used

    def send(self, request) -> Future:
        """Queue one request; its future gets this request's response, or the reason the connection
        ended. Raises ConnectionLost if it already ended (then nothing was sent)."""
        future: Future = Future()
        with self._cond:
            if self._ended is not None:
                raise ConnectionLost(f"the connection ended: {self._ended!r}")
            self._pending.append(future)
            self._outbox.append(request)
            self.last_used = self._clock()
            self._cond.notify_all()
        return future

    def _request_stream(self) -> Iterator:
        while True:
            with self._cond:
                while not self._outbox:
                    self._cond.wait()
                item = self._outbox.popleft()
            if item is _CLOSE:
                return
            yield item

    def _read(self) -> None:
        try:
            for response in self._call:
                with self._cond:
                    future = self._pending.popleft() if self._pending else None
                if future is None:
                    raise ConnectionLost("a response arrived that no request is waiting for")
                future.set_result(response)
            reason: BaseException = ConnectionLost("the server ended the stream")
        except BaseException as exc:  # noqa: BLE001 - every caller still waiting is failed with it
            reason = exc
        self.end(reason)

    def end(self, reason: BaseException) -> None:
        """End the connection (idempotent): every caller still waiting fails with `reason`."""
        with self._cond:
            first = self._ended is None
            if first:
                self._ended = reason
                self._outbox.append(_CLOSE)
                self._cond.notify_all()
            waiting, self._pending = list(self._pending), deque()
        if first and hasattr(self._call, "cancel"):
            self._call.cancel()
        for future in waiting:
            future.set_exception(reason if isinstance(reason, Exception) else ConnectionLost(repr(reason)))


class SharedAppendStream:
    """The process's one connection, opened on the first append and replaced when it ends."""

    def __init__(self, open_call: OpenCall, *, max_idle_s: float = MAX_IDLE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._open_call = open_call
        self._max_idle_s = max_idle_s
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: AppendConnection | None = None
        self.connections_opened = 0

    def append(self, request, schema_id: Hashable, writer_schema, timeout_s: float):
        """Send one AppendRowsRequest (without its writer schema; it is added when this connection needs
        it) and wait for its own response. Raises what ended the connection, or NoAnswer."""
        conn, future = self._send(request, schema_id, writer_schema)
        try:
            response = future.result(timeout=timeout_s)
        except FutureTimeout:
            conn.end(NoAnswer(f"no response within {timeout_s:g} s"))
            raise NoAnswer(f"no response within {timeout_s:g} s; the connection was discarded") from None
        except BaseException:
            conn.last_key = None  # the server may not have taken the schema this request carried
            raise
        if response.error.code:
            conn.last_key = None  # likewise for a refused request: the next one carries the schema again
        return response

    def _send(self, request, schema_id: Hashable, writer_schema) -> tuple[AppendConnection, Future]:
        key = (request.write_stream, schema_id)
        with self._lock:
            for _ in range(2):  # a connection that ended between the check and the send sent nothing
                conn = self._usable(request.write_stream)
                if conn.last_key != key:
                    request.proto_rows.writer_schema = writer_schema
                try:
                    future = conn.send(request)
                except ConnectionLost:
                    continue
                conn.last_key = key
                return conn, future
            raise ConnectionLost("the connection ended twice while sending")

    def _usable(self, write_stream: str) -> AppendConnection:
        conn = self._conn
        decision = reuse_decision(None if conn is None else conn.ended, conn.waiting if conn else 0,
                                  conn.idle_s() if conn else 0.0, self._max_idle_s)
        if decision == "reuse":
            return conn
        if conn is not None:
            conn.end(ConnectionLost("replaced"))
        # Routing: the header names a table's stream so the request reaches its region; every table this
        # process writes is in the one staging dataset, so in one location.
        self._conn = AppendConnection(self._open_call, (("x-goog-request-params", f"write_stream={write_stream}"),),
                                      self._clock)
        self.connections_opened += 1
        reason = "first" if conn is None else ("idle" if decision == "reopen_idle" else "ended")
        log_event("write_connection_opened", severity="WARNING" if reason == "ended" else "INFO", reason=reason,
                  connections_opened=self.connections_opened)
        return self._conn
