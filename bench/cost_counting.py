"""A counting shim for bench/cost.py, installed in each function process of the LOCAL stack when
$BATCHLINE_COST_COUNT_DIR is set (bench/cost_site/sitecustomize.py; never part of a deployed function:
bench/ is not in the function archives). It counts where the calls happen:

* every BigQuery REST request (a wrapper of `requests.Session.send`, the HTTP transport of the official
  client): method kind, request and response bytes, and for a query its SQL and the batchline function
  that sent it;
* every gRPC call on every channel the process opens (an interceptor added by wrapping
  `grpc.insecure_channel` / `grpc.secure_channel`): Firestore, Pub/Sub and the Storage Write API
  (bench/cost_grpc.py reads what each request and response means for billing);
* every HTTP request the function serves (a wrapper of `flask.Flask.__call__`): route, wall time,
  status, the BigQuery queries sent while serving it (`inv|<route>|queries`: the thread's current
  route), and for a Pub/Sub push the delivered message's billed size.

Counts are flat `section|key|field -> number` (cumulative over the process's life), written to
`<dir>/<process>-<pid>.json` by a daemon thread (when idle for 0.5 s, at least every 2 s while busy); timed events
(query start/end, appended rows) are appended to `<dir>/<process>-<pid>.events.jsonl`. The bench diffs
snapshots taken between phases. Nothing here changes what a call does or returns.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import heapq
import io
import json
import os
import sys
import threading
import time
from collections import Counter, defaultdict

ENV_DIR = "BATCHLINE_COST_COUNT_DIR"
_ROUTE = threading.local()  # the route the current thread serves (a query is counted against it)
ENV_PROCESS = "BATCHLINE_COST_PROCESS"
HOT_DOCS_KEPT = 30
FORCED_FLUSH_S = 2.0  # bench/cost_stack.settle waits longer than this for quiet files


class Tally:
    def __init__(self, out_dir: str, process: str) -> None:
        self.out_dir, self.process = out_dir, process
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.pid = os.getpid()
        self.counts: Counter = Counter()
        self.peaks: dict[str, float] = {}
        self.texts: dict[str, dict] = {}
        self.doc_writes: dict[str, list[float]] = defaultdict(list)
        self.template_writes: Counter = Counter()
        self.template_docs: Counter = Counter()
        self.events: list[dict] = []
        self.seq = 0
        self.dirty = False
        self.last_activity = 0.0
        self.last_written = 0.0
        self.active = 0
        self.busy_since = 0.0
        self._thread: threading.Thread | None = None

    def after_fork(self) -> None:
        self.lock = threading.Lock()
        self._reset()

    # -- recording -----------------------------------------------------------------------------
    def add(self, key: str, value: float = 1) -> None:
        with self.lock:
            self.counts[key] += value
            self._touch()

    def add_many(self, items: dict[str, float]) -> None:
        with self.lock:
            for k, v in items.items():
                self.counts[k] += v
            self._touch()

    def peak(self, key: str, value: float) -> None:
        with self.lock:
            self.peaks[key] = max(self.peaks.get(key, 0), value)

    def event(self, **fields) -> None:
        with self.lock:
            self.events.append(fields)
            self._touch()

    def doc_write(self, path: str, t: float) -> None:
        with self.lock:
            times = self.doc_writes[path]
            if not times:
                self.template_docs[doc_template(path)] += 1
            times.append(round(t, 3))
            self.template_writes[doc_template(path)] += 1

    def statement(self, sql: str, caller: str) -> str:
        h = hashlib.sha1(f"{caller}\0{sql}".encode()).hexdigest()[:16]
        with self.lock:
            self.texts.setdefault(h, {"sql": sql, "caller": caller})
        return h

    def request_started(self) -> float:
        with self.lock:
            if self.active == 0:
                self.busy_since = time.monotonic()
            self.active += 1
            self.peaks["proc|max_concurrent_requests"] = max(self.peaks.get("proc|max_concurrent_requests", 0),
                                                            self.active)
        return time.monotonic()

    def request_ended(self) -> None:
        with self.lock:
            self.active -= 1
            if self.active == 0:
                self.counts["proc|busy_s"] += time.monotonic() - self.busy_since
            self._touch()

    def _touch(self) -> None:
        self.dirty = True
        self.last_activity = time.time()
        if self._thread is None or self.pid != os.getpid():
            self.pid = os.getpid()
            self._thread = threading.Thread(target=self._flush_loop, name="cost-counts", daemon=True)
            self._thread.start()

    # -- writing -------------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        while True:
            time.sleep(0.25)
            now = time.time()
            if self.dirty and (now - self.last_activity >= 0.5 or now - self.last_written >= FORCED_FLUSH_S):
                self.flush()

    def flush(self) -> None:
        with self.lock:
            if not self.dirty:
                return
            self.seq += 1
            hot = heapq.nlargest(HOT_DOCS_KEPT, self.doc_writes.items(), key=lambda kv: len(kv[1]))
            snap = {"process": self.process, "pid": self.pid, "seq": self.seq, "written_at": time.time(),
                    "last_activity": self.last_activity, "counts": dict(self.counts), "peaks": dict(self.peaks),
                    "texts": dict(self.texts), "hot_docs": {p: list(ts) for p, ts in hot},
                    "doc_templates": {t: {"writes": n, "docs": self.template_docs[t]}
                                      for t, n in self.template_writes.items()}}
            events, self.events = self.events, []
            self.dirty = False
            self.last_written = snap["written_at"]
        base = os.path.join(self.out_dir, f"{self.process}-{self.pid}")
        if events:
            with open(base + ".events.jsonl", "a") as fh:
                fh.write("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
        tmp = base + ".json.tmp"
        with open(tmp, "w") as fh:
            json.dump(snap, fh)
        os.replace(tmp, base + ".json")


def doc_template(path: str) -> str:
    """`projects/p/databases/d/documents/batches/B/items/I` -> `batches/*/items/*`."""
    rel = path.split("/documents/", 1)[-1]
    parts = rel.split("/")
    return "/".join(p if i % 2 == 0 else "*" for i, p in enumerate(parts))


def batchline_caller() -> str:
    """`module.function` of the innermost batchline frame (not clients.py) that led to this call."""
    f = sys._getframe(2)
    while f is not None:
        fn = f.f_code.co_filename.replace("\\", "/")
        if "/batchline/" in fn and not fn.endswith(("/clients.py", "/write_api.py")):
            return f"{fn.rsplit('/', 1)[-1][:-3]}.{f.f_code.co_name}"
        f = f.f_back
    return "?"


# -- BigQuery REST -------------------------------------------------------------------------------
def install_http(tally: Tally) -> None:
    import requests
    from cost_sql import rest_kind, statement_kind

    hosts = tuple(h for h in (os.environ.get("BIGQUERY_EMULATOR_HOST"), "bigquery.googleapis.com") if h)
    orig = requests.Session.send

    def send(self, request, **kwargs):
        if not any(h in (request.url or "") for h in hosts):
            return orig(self, request, **kwargs)
        path = request.path_url
        kind = rest_kind(request.method or "", path)
        body = request.body or b""
        sql = _query_text(body) if kind in ("jobs.query", "jobs.insert") else None
        h = tally.statement(sql, batchline_caller()) if sql else None
        t0 = time.time()
        resp = orig(self, request, **kwargs)
        t1 = time.time()
        size = len(resp.content) if not kwargs.get("stream") else 0
        counts = {f"bq.rest|{kind}|n": 1, f"bq.rest|{kind}|req_bytes": len(body), f"bq.rest|{kind}|resp_bytes": size}
        if resp.status_code >= 400:
            counts[f"bq.rest|{kind}|errors"] = 1
        if h:
            counts[f"bq.stmt|{h}|n"] = 1
            counts[f"inv|{getattr(_ROUTE, 'route', None) or 'no request'}|queries"] = 1
            counts[f"bq.jobs|{statement_kind(sql)}|n"] = 1
            tally.event(e="q", t0=round(t0, 4), t1=round(t1, 4), h=h)
        tally.add_many(counts)
        return resp

    requests.Session.send = send


def _query_text(body) -> str | None:
    try:
        doc = json.loads(body if isinstance(body, str | bytes) else bytes(body))
    except (ValueError, TypeError):
        return None
    if "query" in doc and isinstance(doc["query"], str):
        return doc["query"]
    q = (doc.get("configuration") or {}).get("query") or {}
    return q.get("query") if isinstance(q.get("query"), str) else None


# -- the function's own HTTP requests (push deliveries, /start, ...) ------------------------------
def install_wsgi(tally: Tally) -> None:
    import flask
    from cost_model import billable_request_seconds, pubsub_message_bytes, pubsub_request_billable

    orig = flask.Flask.__call__

    def __call__(self, environ, start_response):
        route = f"{environ.get('REQUEST_METHOD', '?')} {environ.get('PATH_INFO', '?')}"
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        status = {}

        def capture(code, headers, exc_info=None):
            status["code"] = code.split(" ", 1)[0]
            return start_response(code, headers, exc_info) if exc_info else start_response(code, headers)

        t0 = tally.request_started()
        _ROUTE.route = route
        try:
            return orig(self, environ, capture)
        finally:
            _ROUTE.route = None
            wall = time.monotonic() - t0
            tally.request_ended()
            counts = {f"inv|{route}|n": 1, f"inv|{route}|wall_s": wall,
                      f"inv|{route}|billable_s": billable_request_seconds(wall),
                      f"inv|{route}|status_{status.get('code', '?')}": 1, f"inv|{route}|req_bytes": len(body)}
            push = _push_message(body)
            if push:
                sub, nbytes = push[0], pubsub_message_bytes(*push[1:])
                counts.update({f"push|{sub}|deliveries": 1, f"push|{sub}|message_bytes": nbytes,
                               f"push|{sub}|billable_bytes": pubsub_request_billable([nbytes])})
                if not status.get("code", "").startswith("2"):
                    counts[f"push|{sub}|nacks"] = 1
            tally.add_many(counts)

    flask.Flask.__call__ = __call__


def _push_message(body: bytes):
    """(subscription, data length, attributes, message id length) of a Pub/Sub push body, else None."""
    if not body.startswith(b"{") or b'"subscription"' not in body:
        return None
    try:
        doc = json.loads(body)
        msg = doc["message"]
        data = base64.b64decode(msg.get("data") or "")
        sub = str(doc["subscription"]).rsplit("/", 1)[-1]
        return sub, len(data), dict(msg.get("attributes") or {}), len(str(msg.get("messageId") or ""))
    except (ValueError, KeyError, TypeError):
        return None


def install() -> Tally | None:
    """Install every counter when $BATCHLINE_COST_COUNT_DIR asks for it; None otherwise."""
    out = os.environ.get(ENV_DIR)
    if not out:
        return None
    os.makedirs(out, exist_ok=True)
    tally = Tally(out, os.environ.get(ENV_PROCESS) or "process")
    os.register_at_fork(after_in_child=tally.after_fork)
    install_http(tally)
    install_wsgi(tally)
    import cost_grpc

    cost_grpc.install(tally)
    atexit.register(tally.flush)
    return tally
