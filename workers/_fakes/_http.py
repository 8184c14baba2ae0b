"""A tiny threaded JSON HTTP server with request recording, latency and fault injection."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeHTTPServer", "Fault", "RecordedRequest", "Reply"]


@dataclass
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    body: dict[str, Any]
    started: float
    ended: float = 0.0
    status: int = 0


@dataclass
class Fault:
    """An injected failure: answer ``status`` with ``body`` for matching requests."""

    path: str | None
    model: str | None
    status: int
    body: dict[str, Any]
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    delay: float = 0.0
    """Seconds to stall before acting (with ``status == 0``: then answer normally)."""

    def matches(self, path: str, body: dict[str, Any]) -> bool:
        return (self.path is None or self.path == path) and (
            self.model is None or body.get("model") == self.model
        )


@dataclass
class Reply:
    """What a route handler answers: a JSON object, or an iterable of objects to stream."""

    status: int = 200
    body: dict[str, Any] | None = None
    stream: Iterable[dict[str, Any]] | None = None
    sse: bool = False
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[str, dict[str, Any]], Reply]


class _QuietServer(ThreadingHTTPServer):
    """Clients closing pooled keep-alive connections is normal, not an error to print."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeHTTPServer:
    """Threaded HTTP server on 127.0.0.1 with a random port.

    Subclasses register routes in ``self.routes[(method, path)]``. Every request is
    recorded; ``max_in_flight`` is the highest number of requests handled at the
    same moment (so tests can assert concurrency without timing anything).
    """

    def __init__(self, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests: list[RecordedRequest] = []
        self.routes: dict[tuple[str, str], Route] = {}
        self.faults: list[Fault] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_by_model: dict[str, int] = {}
        """Requests being handled right now, per ``model`` field of the request body."""
        self.max_in_flight_by_model: dict[str, int] = {}
        """The most requests for one model handled at the same moment."""
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self, port: int = 0) -> FakeHTTPServer:
        """Listen on 127.0.0.1 (``port`` 0: a free one; pass the old port to restart)."""
        handler = _make_handler(self)
        self._server = _QuietServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), daemon=True
        )  # a short poll interval: stop() returns in ms, not up to 0.5 s
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls ---------------------------------------------------------
    def fail(
        self,
        *,
        status: int,
        message: str = "injected failure",
        path: str | None = None,
        model: str | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
        drop: bool = False,
    ) -> None:
        """Fail the next ``times`` matching requests (``drop`` closes the socket)."""
        self.faults.append(
            Fault(path, model, status, {"error": message}, times, headers or {}, drop)
        )

    def stall(
        self,
        seconds: float,
        *,
        path: str | None = None,
        model: str | None = None,
        times: int = 1,
    ) -> None:
        """Delay the next ``times`` matching requests by ``seconds``, then answer normally."""
        self.faults.append(Fault(path, model, 0, {}, times, delay=seconds))

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Recorded requests for one path, in arrival order."""
        return [r for r in self.requests if r.path == path]

    def reset(self) -> None:
        """Forget recorded requests and counters (faults stay)."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight
            self.max_in_flight_by_model = dict(self.in_flight_by_model)

    # -- internals ---------------------------------------------------------------
    def _take_fault(self, path: str, body: dict[str, Any]) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(path, body):
                    fault.times -= 1
                    return fault
        return None

    def _enter(self, record: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            model = str(record.body.get("model") or "")
            now = self.in_flight_by_model[model] = self.in_flight_by_model.get(model, 0) + 1
            self.max_in_flight_by_model[model] = max(self.max_in_flight_by_model.get(model, 0), now)

    def _leave(self, record: RecordedRequest, status: int) -> None:
        with self._lock:
            if record.ended:
                return  # already counted out (before its last bytes went out)
            self.in_flight -= 1
            model = str(record.body.get("model") or "")
            self.in_flight_by_model[model] = self.in_flight_by_model.get(model, 1) - 1
            record.ended = time.monotonic()
            record.status = status


def _make_handler(server: FakeHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except json.JSONDecodeError:
                body = {"_raw": raw.decode("utf-8", "replace")}
            path = self.path.split("?", 1)[0]
            record = RecordedRequest(method, path, body, time.monotonic())
            server._enter(record)
            status = 500
            try:
                if server.latency:
                    time.sleep(server.latency)
                fault = server._take_fault(path, body)
                if fault is not None and fault.delay:
                    time.sleep(fault.delay)
                if fault is not None and fault.status == 0 and not fault.drop:
                    fault = None  # a stall: answer normally
                if fault is not None and fault.drop:
                    status = 0
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault is not None:
                    reply = Reply(status=fault.status, body=fault.body, headers=fault.headers)
                else:
                    route = server.routes.get((method, path))
                    reply = (
                        route(path, body)
                        if route
                        else Reply(status=404, body={"error": f"no route {method} {path}"})
                    )
                status = reply.status
                with server._lock:  # before the client can see the reply (tests read it)
                    record.status = status
                self._send(reply, lambda: server._leave(record, status))
            finally:
                server._leave(record, status)

        def _send(self, reply: Reply, finished: Callable[[], None]) -> None:
            """Write ``reply``; ``finished`` runs just before its last piece goes out, so the
            request is counted out of flight before the client can see it complete and
            send its next one (else a fast client overlaps a request still counted)."""
            if reply.stream is None:
                data = json.dumps(reply.body or {}).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                finished()
                self.wfile.write(data)
                return
            self.send_response(reply.status)
            ctype = "text/event-stream" if reply.sse else "application/x-ndjson"
            self.send_header("Content-Type", ctype)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for item in reply.stream:
                if isinstance(item, dict) and item.get("done") is True:
                    finished()  # Ollama's last line: its client is done reading here
                line = (
                    f"data: {json.dumps(item)}\n\n" if reply.sse else json.dumps(item) + "\n"
                ).encode()
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
            finished()  # idempotent: for SSE and streams without a "done" line
            if reply.sse:
                end = b"data: [DONE]\n\n"
                self.wfile.write(f"{len(end):x}\r\n".encode() + end + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    return Handler
