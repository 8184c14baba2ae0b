"""``tandem serve``: tandem as an OpenAI-compatible model endpoint.

Endpoints (README, "tandem serve"):

* ``POST /v1/chat/completions`` — the last user message is the question, earlier messages
  its context (or ``thread_id`` selects a persisted thread); ``stream: true`` streams
  OpenAI's ``chat.completion.chunk`` events. Model ``tandem`` lets the router decide,
  ``tandem/<worker>`` forces one specialist. The route, workers, citations, local share,
  cost and savings come back in a ``tandem`` object (and the ``x-tandem-route`` header).
* ``GET /v1/models`` — ``tandem`` and ``tandem/<worker>`` for each specialist.
* ``GET /metrics`` (Prometheus), ``GET /healthz`` (the process is up), ``GET /readyz``
  (models and stores reachable).

Starlette, uvicorn and prometheus-client are imported from here only, so the rest of the
CLI does not pay for them.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable
from pathlib import Path

from rich.markup import escape

from tandem.agents.cost import price_tokens
from tandem.agents.privacy import detector_for
from tandem.agents.shell._common import err, ready, runtime
from tandem.agents.shell.serve._app import Server, create_app, tandem_section
from tandem.agents.shell.serve._engine import Engine, Outcome, RunRequest, SessionEngine
from tandem.agents.shell.serve._metrics import ServerMetrics
from tandem.agents.shell.serve._run import access_line, is_loopback, serve_app
from tandem.agents.shell.serve._wire import ChatRequest, WireError, parse_chat_request
from tandem.graphs import Runtime, open_checkpointer
from tandem.workers.errors import TandemError

__all__ = [
    "ChatRequest",
    "Engine",
    "Outcome",
    "RunRequest",
    "Server",
    "ServerMetrics",
    "SessionEngine",
    "WireError",
    "api_keys",
    "create_app",
    "is_loopback",
    "parse_chat_request",
    "run_server",
    "server_loop",
    "tandem_section",
    "warm_up",
]


async def warm_up(rt: Runtime) -> None:
    """Pay the first request's one-off costs at start, off the event loop where they can:
    the privacy detector's engine (when runs scan: something can leave the machine),
    litellm's price list (the ledger's first use imports litellm: seconds during which every
    other request would wait) and the router's worker profiles (an embedding call)."""
    if rt.scans():
        await asyncio.to_thread(detector_for(rt.config.privacy).find, "warm-up")
    sup = rt.supervisor.llm.model
    await asyncio.to_thread(price_tokens, sup, 1, 1, rt.config.cost.prices)
    try:
        await rt.router.decide("warm-up")
    except TandemError as exc:  # /readyz reports an unreachable model; serve anyway
        err.print(f"[yellow]warning:[/] routing warm-up failed: {escape(str(exc))}")


def server_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop factory when it is installed (uvicorn's own choice; it takes
    about a third off the HTTP layer's time), else None (asyncio's)."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def api_keys(configured: list[str]) -> list[str]:
    """``[serve] api_keys`` plus the comma-separated ``TANDEM_API_KEYS``."""
    extra = [k.strip() for k in os.environ.get("TANDEM_API_KEYS", "").split(",")]
    return list(dict.fromkeys(k for k in [*configured, *extra] if k))


async def run_server(config: Path | None, *, host: str | None, port: int | None) -> None:
    """Load the configuration, prepare models and stores, and serve until a signal.

    Raises:
        UsageError: A non-loopback ``host`` without API keys (nothing is started).
        TandemError: The configuration, models or checkpointer cannot be used.
    """
    rt = runtime(config)
    settings = rt.config.serve
    host = host or settings.host
    port = settings.port if port is None else port
    keys = api_keys(settings.api_keys)
    access = access_line(host, len(keys))  # refuses before anything is loaded
    await ready(rt)
    await warm_up(rt)
    async with open_checkpointer(rt.config) as saver:
        engine = SessionEngine(rt, saver)
        app = create_app(engine, settings, api_keys=keys)
        server: Server = app.state.server
        shown = f"[{host}]" if ":" in host else host
        models = ", ".join(["tandem", *(f"tandem/{w}" for w in engine.workers)])
        err.print(
            f"tandem serve: http://{shown}:{port}/v1 · models: {escape(models)} · "
            f"policy: {rt.config.privacy.policy} · {escape(access)}",
            highlight=False,
            soft_wrap=True,
        )

        def stop() -> None:
            server.draining = True

        await serve_app(app, host, port, grace=settings.shutdown_grace, on_stop=stop)
    # Exiting, the interpreter's last garbage collection walks the whole heap (models,
    # detector, clients): seconds of a stopped server. Nothing left needs collecting.
    gc.freeze()
