"""The ASGI app: OpenAI-compatible chat completions, models, metrics and health over an Engine."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tandem.agents.shell.serve._engine import Engine, EventSink, Outcome, RunRequest
from tandem.agents.shell.serve._limits import Admission, Rejected
from tandem.agents.shell.serve._metrics import CONTENT_TYPE_LATEST, ServerMetrics
from tandem.agents.shell.serve._text import StreamText
from tandem.agents.shell.serve._wire import (
    DONE,
    KEEPALIVE,
    ROUTED_MODEL,
    ChatRequest,
    WireError,
    chunk,
    completion,
    error_body,
    new_id,
    parse_chat_request,
    sse,
    usage,
)
from tandem.graphs import Answer
from tandem.graphs.config import ServeSettings
from tandem.workers.errors import TandemError, UsageError

__all__ = ["Server", "create_app"]

log = logging.getLogger("tandem.serve")

_DEADLINE_MARGIN = 30.0
"""Seconds the server's hard stop leaves after a run's own (graceful) deadline."""


class _Gone(Exception):
    """The client hung up while the request body was being read."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _raw(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers]


async def _send_json(
    send: Send, status: int, body: Any, headers: Sequence[tuple[str, str]] = ()
) -> None:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *_raw(headers),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _send_error(send: Send, error: WireError) -> None:
    await _send_json(send, error.status, error.body(), list(error.headers.items()))


async def _cancel(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


def _deadline_error(seconds: float) -> WireError:
    return WireError(
        504,
        f"tandem did not finish within the request deadline of {seconds:g} s ([serve] "
        "deadline); the run was cancelled.",
        type="timeout",
        code="deadline_exceeded",
    )


def _run_error(exc: BaseException) -> WireError:
    """A failed run as the client sees it (tandem's messages are written for users)."""
    if isinstance(exc, WireError):
        return exc
    if isinstance(exc, UsageError):
        return WireError(400, str(exc), param="messages", code=type(exc).__name__)
    if isinstance(exc, TandemError):
        return WireError(502, str(exc), type="server_error", code=type(exc).__name__)
    log.error("a run failed", exc_info=exc)
    message = "The run failed with an internal error (see the server log)."
    return WireError(500, message, type="server_error")


def tandem_section(
    answer: Answer,
    req: ChatRequest,
    thread_id: str | None,
    text: str | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``tandem`` extension object: how the answer was produced and what it cost.

    Route and worker results are passed through whole (``model_dump``), so fields they gain
    appear here without a change; worker answers and instructions are left out (the answer
    is the message).
    """
    t = answer.ledger.totals
    notes = [*answer.notes, *notes]
    if req.system_messages:
        notes.append(
            f"{req.system_messages} system/developer message(s) not used: tandem's specialists "
            "and supervisor bring their own instructions"
        )
    section: dict[str, Any] = {
        "route": answer.route.model_dump(mode="json"),
        "workers": [
            r.model_dump(mode="json", exclude={"answer", "instruction", "citations"})
            for r in answer.worker_results
        ],
        "citations": [c.model_dump(mode="json") for c in answer.citations],
        "escalated": answer.escalated,
        "local_share": t.local_share,
        "cost_usd": t.cost_usd,
        "counterfactual_usd": t.counterfactual_usd,
        "savings_usd": round(max(0.0, t.counterfactual_usd - t.cost_usd), 8),
        "savings_pct": t.savings_pct,
        "totals": t.model_dump(mode="json"),
        "privacy": {
            "policy": answer.privacy.policy,
            "findings": dict(answer.privacy.findings),
            "scanned": answer.privacy.scanned,
        },
        "learning": answer.learning.model_dump(mode="json"),  # record ids, memory it used
        "notes": notes,
        "thread_id": thread_id,
        "ignored": list(req.ignored),
    }
    if text is not None:
        section["text"] = text  # the stream could not end as the final answer: this is it
    return section


def _route_header(route: dict[str, Any]) -> str:
    workers = ",".join(str(w) for w in route.get("workers") or [])
    return str(route.get("kind", "")) + (f"; workers={workers}" if workers else "")


def _approval_text(outcome: Outcome) -> str:
    a = outcome.approval or {}
    return (
        f"tandem needs your approval to send a request ({a.get('bytes', 0)} bytes, sensitive "
        f"values redacted) to {a.get('model', 'the remote model')} for "
        f"'{a.get('purpose', '')}'. Send 'approve': true on thread {outcome.thread_id} to "
        "send it, or 'approve': false to keep the run on this machine."
    )


class Server:
    """What the endpoints of one app share: engine, settings, admission, metrics."""

    def __init__(
        self,
        engine: Engine,
        settings: ServeSettings,
        api_keys: Sequence[str],
        metrics: ServerMetrics,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.keys = [k.encode() for k in api_keys if k]
        self.admission = Admission(settings.max_concurrent, settings.queue, settings.queue_timeout)
        run_deadline = engine.run_deadline()
        self.deadline: float | None = settings.deadline or (
            run_deadline + _DEADLINE_MARGIN if run_deadline else None
        )
        self.draining = False
        self.runs: set[asyncio.Task[Outcome]] = set()
        metrics.in_progress.set_function(lambda: self.admission.active)
        metrics.queued.set_function(lambda: self.admission.waiting)

    def authorize(self, scope: Scope) -> None:
        """Check the Bearer key (when keys are configured).

        Raises:
            WireError: 401, as OpenAI words it (missing vs incorrect key).
        """
        if not self.keys:
            return
        scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise WireError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                headers={"www-authenticate": "Bearer"},
            )
        given = token.encode()
        # Compare with every key: the time taken does not say which one (nearly) matched.
        matches = [hmac.compare_digest(given, key) for key in self.keys]
        if not any(matches):
            shown = f"{token[:3]}***{token[-2:]}" if len(token) > 8 else "***"
            raise WireError(
                401,
                f"Incorrect API key provided: {shown}. The server's keys are [serve] api_keys "
                "and TANDEM_API_KEYS.",
                code="invalid_api_key",
                headers={"www-authenticate": "Bearer"},
            )

    async def read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The request body, refused (413) past ``max_body_bytes``."""
        limit = self.settings.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            body = bytes(message.get("body", b""))
            size += len(body)
            if size > limit:
                raise _too_large(limit)
            parts.append(body)
            if not message.get("more_body", False):
                return b"".join(parts)

    def start(self, run: RunRequest, on_event: EventSink) -> asyncio.Task[Outcome]:
        """Start ``run`` as a task (cancelled at shutdown if still going)."""
        task = asyncio.ensure_future(self.engine.run(run, on_event))
        self.runs.add(task)
        task.add_done_callback(self.runs.discard)
        return task

    def finished(self, outcome: Outcome, started: float, forced: bool) -> None:
        seconds = time.monotonic() - started
        self.admission.record(seconds)
        if outcome.answer is not None:
            self.metrics.observe_answer(outcome.answer, seconds, forced=forced)

    def error(self, error: WireError) -> WireError:
        self.metrics.errors.labels(type=error.code or error.type).inc()
        return error


def _too_large(limit: int) -> WireError:
    return WireError(
        413,
        f"The request body is larger than this server's limit of {limit} bytes "
        "([serve] max_body_bytes).",
        code="request_too_large",
    )


async def _watch(receive: Receive) -> None:
    """Return when the client hangs up (the body has been read: only disconnect is left)."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


class ChatCompletions:
    """``POST /v1/chat/completions`` as a raw ASGI app: its own body limit, Server-Sent
    Events and disconnect watch (whatever the ASGI server's spec version)."""

    def __init__(self, server: Server) -> None:
        self.s = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = self.s
        arrived = time.monotonic()
        try:
            if s.draining:
                raise WireError(
                    503,
                    "tandem is shutting down; retry on another instance.",
                    type="server_error",
                    code="shutting_down",
                )
            s.authorize(scope)
            body = await s.read_body(scope, receive)
            req = parse_chat_request(body, s.engine.workers, user_threads=s.settings.user_threads)
            run = RunRequest(
                query=req.query,
                history=list(req.history),
                thread_id=req.thread_id,
                worker=req.worker,
                approve=req.approve,
                stream=req.stream,
            )
            s.engine.check(run)
        except _Gone:
            return
        except WireError as exc:
            await _send_error(send, s.error(exc))
            return
        try:
            async with s.admission.slot():
                left = None if s.deadline is None else s.deadline - (time.monotonic() - arrived)
                if req.stream:
                    await _Stream(s, req, run, receive, send).respond(left)
                else:
                    await self._complete(req, run, receive, send, left)
        except Rejected as exc:
            s.metrics.rejected.labels(reason=exc.reason).inc()
            error = WireError(
                429,
                f"tandem is busy: {exc.reason} ([serve] max_concurrent = "
                f"{s.settings.max_concurrent}, queue = {s.settings.queue}). "
                f"Retry after {exc.retry_after} s.",
                type="requests",
                code="rate_limit_exceeded",
                headers={"retry-after": str(exc.retry_after)},
            )
            await _send_error(send, s.error(error))

    async def _complete(
        self, req: ChatRequest, run: RunRequest, receive: Receive, send: Send, left: float | None
    ) -> None:
        s = self.s
        started = time.monotonic()
        task = s.start(run, lambda event: None)
        watcher = asyncio.ensure_future(_watch(receive))
        try:
            done, _ = await asyncio.wait(
                {task, watcher}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            watcher.cancel()
            if not task.done():
                await _cancel(task)  # hung up, deadline, or this request was cancelled
        if task not in done:
            if watcher in done:
                s.metrics.errors.labels(type="client_disconnected").inc()
                return
            await _send_error(send, s.error(_deadline_error(s.deadline or 0)))
            return
        try:
            outcome = task.result()
        except Exception as exc:
            await _send_error(send, s.error(_run_error(exc)))
            return
        s.finished(outcome, started, req.worker is not None)
        run_ms = (time.monotonic() - started) * 1000
        headers = [("server-timing", f"run;dur={run_ms:.2f}")]  # the HTTP layer's share is the rest
        if outcome.thread_id:
            headers.append(("x-tandem-thread", outcome.thread_id))
        if req.ignored:
            headers.append(("x-tandem-ignored", ",".join(req.ignored)))
        cid = new_id()
        if outcome.answer is None:
            headers.append(("x-tandem-approval", "required"))
            tandem = {"approval": outcome.approval, "thread_id": outcome.thread_id}
            body = completion(cid, req.model, _approval_text(outcome), tandem=tandem)
            await _send_json(send, 200, body, headers)
            return
        answer = outcome.answer
        t = answer.ledger.totals
        section = tandem_section(answer, req, outcome.thread_id, notes=outcome.notes)
        body = completion(
            cid, req.model, answer.text, tokens=(t.tokens_in, t.tokens_out), tandem=section
        )
        headers.append(("x-tandem-route", _route_header(section["route"])))
        await _send_json(send, 200, body, headers)


class _Stream:
    """One streamed response: headers once the route is known, then chunks, then ``[DONE]``."""

    def __init__(
        self, server: Server, req: ChatRequest, run: RunRequest, receive: Receive, send: Send
    ) -> None:
        self.s = server
        self.req = req
        self.run = run
        self.receive = receive
        self.send = send
        self.cid = new_id()
        self.created = int(time.time())
        self.text = StreamText()
        self.opened = False
        self.first_token: float | None = None
        self.started = time.monotonic()
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def frame(self, **kw: Any) -> bytes:
        return sse(
            chunk(self.cid, self.req.model, self.created, with_usage=self.req.include_usage, **kw)
        )

    async def body(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def open(self, route: dict[str, Any] | None, thread_id: str | None) -> None:
        headers = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            ("x-accel-buffering", "no"),
        ]
        if route is not None:
            headers.append(("x-tandem-route", _route_header(route)))
        if thread_id:
            headers.append(("x-tandem-thread", thread_id))
        if self.req.ignored:
            headers.append(("x-tandem-ignored", ",".join(self.req.ignored)))
        await self.send({"type": "http.response.start", "status": 200, "headers": _raw(headers)})
        self.opened = True
        await self.body(self.frame(delta={"role": "assistant", "content": "", "refusal": None}))

    def content_frame(self, piece: str) -> bytes:
        if self.first_token is None:
            self.first_token = time.monotonic() - self.started
            self.s.metrics.first_token.observe(self.first_token)
        return self.frame(delta={"content": piece})

    async def content(self, piece: str) -> None:
        await self.body(self.content_frame(piece))

    async def fail(self, error: WireError) -> None:
        self.s.error(error)
        if not self.opened:
            await _send_error(self.send, error)
            return
        await self.body(sse(error.body()) + DONE)
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    def sink(self, event: dict[str, Any]) -> None:
        """The run's events, as they happen (in the run's task)."""
        if event.get("event") == "token" and event.get("worker"):
            return  # a specialist's draft: held back, the final answer brings it (StreamText)
        self.events.put_nowait(event)

    async def tick(self) -> None:
        """Wake the pump every ``keepalive`` seconds (a comment line if nothing was sent)."""
        while True:
            await asyncio.sleep(self.s.settings.keepalive)
            self.events.put_nowait({"event": "_tick"})

    async def respond(self, left: float | None) -> None:
        s = self.s
        task = s.start(self.run, self.sink)
        task.add_done_callback(lambda _: self.events.put_nowait({"event": "_end"}))
        watcher = asyncio.ensure_future(_watch(self.receive))
        watcher.add_done_callback(lambda _: self.events.put_nowait({"event": "_gone"}))
        ticker = asyncio.ensure_future(self.tick())
        try:
            async with asyncio.timeout(left):
                ended = await self.pump()
        except TimeoutError:
            await _cancel(task)
            await self.fail(_deadline_error(s.deadline or 0))
            return
        finally:
            watcher.cancel()
            ticker.cancel()
            if not task.done():
                await _cancel(task)  # hung up, or this request was cancelled (shutdown)
        if not ended:
            s.metrics.errors.labels(type="client_disconnected").inc()
            return
        try:
            outcome = task.result()
        except Exception as exc:
            await self.fail(_run_error(exc))
            return
        s.finished(outcome, self.started, self.req.worker is not None)
        await self.finish(outcome)

    async def pump(self) -> bool:
        """Forward events until the run ends (True) or the client hangs up (False).

        Events that arrived together go out in one write.
        """
        quiet = True  # nothing sent since the last tick
        while True:
            batch = [await self.events.get()]
            while not self.events.empty():
                batch.append(self.events.get_nowait())
            out = bytearray()
            for event in batch:
                kind = event.get("event")
                if kind == "_gone":
                    return False
                if kind == "_end":
                    if out:
                        await self.body(bytes(out))
                    return True
                if kind == "_tick":
                    if self.opened and quiet and not out:
                        out += KEEPALIVE
                    quiet = True
                elif kind == "route" and not self.opened:
                    await self.open(event.get("route"), self.run.thread_id)
                elif kind == "token":
                    if not self.opened:
                        await self.open(None, self.run.thread_id)
                    piece = self.text.token(str(event.get("text", "")), draft=False)
                    if piece:
                        out += self.content_frame(piece)
                elif kind == "reset":
                    self.text.reset()
            if out:
                quiet = False
                await self.body(bytes(out))

    async def finish(self, outcome: Outcome) -> None:
        req = self.req
        tokens = (0, 0)
        if outcome.answer is None:
            if not self.opened:
                await self.open(None, outcome.thread_id)
            await self.content(_approval_text(outcome))
            tandem: dict[str, Any] = {"approval": outcome.approval, "thread_id": outcome.thread_id}
        else:
            answer = outcome.answer
            if not self.opened:
                await self.open(answer.route.model_dump(mode="json"), outcome.thread_id)
            rest, consistent = self.text.finish(answer.text)
            if rest:
                await self.content(rest)
            final = None if consistent else answer.text
            tandem = tandem_section(answer, req, outcome.thread_id, final, outcome.notes)
            tokens = (answer.ledger.totals.tokens_in, answer.ledger.totals.tokens_out)
        out = self.frame(finish_reason="stop", tandem=tandem)
        if req.include_usage:
            last = chunk(
                self.cid,
                req.model,
                self.created,
                no_choices=True,
                with_usage=True,
                usage_row=usage(*tokens),
            )
            out += sse(last)
        await self.send({"type": "http.response.body", "body": out + DONE, "more_body": False})


_PATHS = frozenset({"/v1/chat/completions", "/v1/models", "/metrics", "/healthz", "/readyz"})


class _HttpMetrics:
    """Pure ASGI middleware: request counts and durations by path and status."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope["path"])
        if path not in _PATHS:
            path = "/v1/models/{model}" if path.startswith("/v1/models/") else "other"
        started = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            self.metrics.http.labels(path=path, status=str(status)).inc()
            self.metrics.http_seconds.labels(path=path).observe(time.perf_counter() - started)


def _json_error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse(error_body(message, code=code), status)


def create_app(
    engine: Engine,
    settings: ServeSettings | None = None,
    *,
    api_keys: Sequence[str] = (),
    metrics: ServerMetrics | None = None,
) -> Starlette:
    """The ASGI app serving ``engine``.

    Args:
        engine: Runs the requests (:class:`~._engine.SessionEngine` in ``tandem serve``).
        settings: ``[serve]`` (limits, deadline, keep-alive …); keys come from ``api_keys``.
        api_keys: Accepted Bearer keys; none: no authentication (loopback-only servers).
        metrics: Where to count (default: a fresh registry for this app).

    The app's :class:`Server` is ``app.state.server`` (``draining`` refuses new requests).
    """
    server = Server(engine, settings or ServeSettings(), api_keys, metrics or ServerMetrics())

    def guarded(
        fn: Callable[[Request], Awaitable[Response]], *, auth: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                if auth:
                    server.authorize(request.scope)
                return await fn(request)
            except WireError as exc:
                return JSONResponse(exc.body(), exc.status, headers=exc.headers)

        return endpoint

    def entry(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "tandem"}

    def names() -> list[str]:
        return [ROUTED_MODEL, *(f"{ROUTED_MODEL}/{w}" for w in engine.workers)]

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [entry(n) for n in names()]})

    async def model(request: Request) -> Response:
        name = str(request.path_params["model"])
        if name not in names():
            raise WireError(
                404,
                f"The model `{name}` does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        return JSONResponse(entry(name))

    async def scrape(request: Request) -> Response:
        return Response(server.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if server.draining:
            return JSONResponse({"status": "draining"}, 503)
        problems = await engine.ready()
        if problems:
            return JSONResponse({"status": "unready", "problems": problems}, 503)
        return JSONResponse({"status": "ready"})

    async def not_found(request: Request, exc: Exception) -> Response:
        return _json_error(404, f"Unknown path {request.url.path}.", "unknown_url")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _json_error(
            405, f"{request.method} is not allowed on {request.url.path}.", "method_not_allowed"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # Shutdown: uvicorn has let in-flight requests finish (shutdown_grace) or cancelled
        # them; runs they left are stopped here (a thread's run resumes from its checkpoint).
        server.draining = True
        for task in list(server.runs):
            await _cancel(task)

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", ChatCompletions(server), methods=["POST"]),
            Route("/v1/models", guarded(models), methods=["GET"]),
            Route("/v1/models/{model:path}", guarded(model), methods=["GET"]),
            Route("/metrics", guarded(scrape, auth=server.settings.metrics_auth), methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
        lifespan=lifespan,
    )
    if server.settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(server.settings.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type"],
            expose_headers=["x-tandem-route", "x-tandem-thread", "x-tandem-ignored"],
            max_age=600,
        )
    app.add_middleware(_HttpMetrics, metrics=server.metrics)
    app.state.server = server
    return app
