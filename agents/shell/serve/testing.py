"""An in-process httpx transport that streams an ASGI app's response as it is written.

``httpx.ASGITransport`` buffers the whole response before returning it, so a test cannot
read a stream chunk by chunk or hang up half-way. This one runs the app in a task, hands
body chunks over as they are sent, and tells the app ``http.disconnect`` when the client
closes the response early — what a socket would do, without one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.types import ASGIApp, Message

__all__ = ["StreamingASGITransport"]


class _Body(httpx.AsyncByteStream):
    def __init__(
        self, chunks: asyncio.Queue[bytes | None], task: asyncio.Task[None], gone: asyncio.Event
    ) -> None:
        self._chunks = chunks
        self._task = task
        self._gone = gone

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            piece = await self._chunks.get()
            if piece is None:
                return
            if piece:
                yield piece

    async def aclose(self) -> None:
        self._gone.set()  # the app's next receive() says http.disconnect
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self._task), 10)


class StreamingASGITransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://tandem")``."""

    def __init__(self, app: ASGIApp, client: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        self.app = app
        self.client = client
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "client": self.client,
            "server": (request.url.host, request.url.port or 80),
            "state": {},
        }
        gone = asyncio.Event()
        sent_body = False
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        started: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set_result(message)
            elif message["type"] == "http.response.body":
                if gone.is_set():
                    raise OSError("the client hung up")
                chunks.put_nowait(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    chunks.put_nowait(None)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                chunks.put_nowait(None)
                if not started.done():
                    started.set_exception(RuntimeError("the app sent no response"))

        task = asyncio.ensure_future(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        try:
            start = await started
        except asyncio.CancelledError:
            gone.set()  # the client gave up before the response began
            raise
        return httpx.Response(
            status_code=int(start["status"]),
            headers=[(bytes(k), bytes(v)) for k, v in start.get("headers", [])],
            stream=_Body(chunks, task, gone),
            request=request,
        )
