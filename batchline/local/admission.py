"""A Cloud Run-like instance cap in front of a local function (issue 18, item 1): an HTTP gate that
admits `slots` requests at once, holds a further request up to `queue_s` for a slot and then answers
429, as Cloud Run does at max instances x concurrency. Each admitted request is forwarded to the real
function and holds its slot at least `min_service_s` (a stand-in for a slower production item).

Why it exists: the Pub/Sub emulator pushes at most 2 requests at a time per subscription and the local
functions have no instance cap, so the hazard (healthy items dead-lettered by 429s at the cap) never
shows locally. Point a push subscription at `gate.url` and it does (tests/stack/test_instance_cap.py).
It records, per item (the `item_id` attribute of the push), how many deliveries it admitted and refused.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from batchline.local.processes import LOOPBACK


def _item_of(body: bytes) -> str:
    try:
        return str(json.loads(body)["message"]["attributes"]["item_id"])
    except (ValueError, KeyError, TypeError):
        return "?"


class AdmissionGate:
    def __init__(self, target_url: str, *, slots: int = 1, queue_s: float = 0.0, min_service_s: float = 0.0) -> None:
        self.target_url = target_url.rstrip("/")
        self.slots, self.queue_s, self.min_service_s = slots, queue_s, min_service_s
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.admitted: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload = gate.handle(self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:  # the counters say what happened
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="admission-gate", daemon=True)

    def start(self) -> AdmissionGate:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, path: str, body: bytes) -> tuple[int, bytes]:
        item = _item_of(body)
        got = self._free.acquire(timeout=self.queue_s) if self.queue_s > 0 else self._free.acquire(blocking=False)
        if not got:
            with self._lock:
                self.refused[item] += 1
            return 429, b'{"error": "no available instance"}'
        try:
            with self._lock:
                self.admitted[item] += 1
            t0 = time.monotonic()
            r = requests.post(self.target_url + path, data=body, timeout=300,
                                   headers={"Content-Type": "application/json"})
            time.sleep(max(0.0, self.min_service_s - (time.monotonic() - t0)))
            return r.status_code, r.content
        finally:
            self._free.release()
