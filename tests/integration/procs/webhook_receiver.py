"""A webhook receiver on 127.0.0.1 for the delivery tests (imported by tests/integration/test_webhook_delivery.py
and test_relay_concurrency.py; it runs in a thread of the test process).

It is what another agency's system would be: a ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive, an OS-chosen
port) that records every request — method, path, headers, raw body — and verifies ``X-Jointcase-Signature``
over ``timestamp.body`` with the shared secret, answering 401 to a request it cannot verify. Otherwise it
answers the next scripted status (``script``), else ``default_status``.

``hold(key)`` makes it stop on the first request carrying that ``Idempotency-Key``: it records the request,
sets ``held`` and answers only once ``release`` is set — the moment a test SIGKILLs the relay that sent it
(between sending and marking). A repeat of the key is answered at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from notifications.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

#: The longest a held request waits for ``release`` before it answers anyway (a test never hangs on it).
HOLD_LIMIT = 120.0


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    signature_ok: bool
    status: int  # what the receiver answered (or was about to, for a held request)
    at: float  # time.time() on arrival
    client: str  # the sender's host:port: one per connection (a relay reuses its connection)

    @property
    def key(self) -> str:
        """The ``Idempotency-Key`` header ('' if missing)."""
        return self.headers.get("idempotency-key", "")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive connections of a killed relay must not hold up server_close
    receiver: WebhookReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A relay killed mid-request leaves a broken connection: not an error of the receiver."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a relay reuses one connection for its whole run
    disable_nagle_algorithm = True  # headers and body are two writes; never wait for a delayed ACK
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: thousands of requests would flood the test output."""

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            super().handle()

    def do_POST(self) -> None:
        receiver = self.server.receiver
        arrived = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        timestamp = headers.get(TIMESTAMP_HEADER.lower(), "")
        signature = headers.get(SIGNATURE_HEADER.lower(), "")
        signature_ok = bool(timestamp and signature) and verify(receiver.secret, timestamp, body, signature)
        key = headers.get("idempotency-key", "")
        held = False
        with receiver.lock:
            if not signature_ok:
                status = 401
            elif key and key == receiver.hold_key:
                status, held = 200, True
                receiver.hold_key = None  # only the first request with the key is held; a repeat is answered
            elif receiver.script:
                status = receiver.script.popleft()
            else:
                status = receiver.default_status
            client = f"{self.client_address[0]}:{self.client_address[1]}"
            receiver.requests.append(Received("POST", self.path, headers, body, signature_ok, status, arrived, client))
            receiver.counts[key] += 1
        if held:
            receiver.held.set()
            receiver.release.wait(HOLD_LIMIT)
        self._answer(status)

    def do_GET(self) -> None:
        self._answer(405)

    def _answer(self, status: int) -> None:
        payload = b'{"ok": true}' if status < 300 else b'{"ok": false}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class WebhookReceiver:
    """Start with ``with WebhookReceiver(secret) as hook:``; ``hook.url("/path")`` is its address."""

    def __init__(self, secret: bytes | str, *, default_status: int = 200) -> None:
        self.secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        self.default_status = default_status
        self.script: deque[int] = deque()  # statuses answered next, in order, before default_status
        self.requests: list[Received] = []
        self.counts: Counter[str] = Counter()  # requests per Idempotency-Key (whatever was answered)
        self.lock = threading.Lock()
        self.hold_key: str | None = None
        self.held = threading.Event()
        self.release = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="webhook-receiver", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *statuses: int) -> None:
        """Answer the next requests with these statuses (signature checks come first: a bad one gets 401)."""
        with self.lock:
            self.script.extend(statuses)

    def hold(self, key: str) -> None:
        """Stop on the next request with this Idempotency-Key until ``release`` is set (see the module doc)."""
        self.hold_key = key

    def received(self, key: str | None = None) -> list[Received]:
        """A copy of the requests so far (only those with ``key`` if given)."""
        with self.lock:
            return [r for r in self.requests if key is None or r.key == key]

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
