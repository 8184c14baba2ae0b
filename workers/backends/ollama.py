"""Ollama engine: the official ``ollama.AsyncClient`` with explicit timeouts.

Every client/HTTP failure is translated here into tandem's error tree, naming
host and model and saying what to do. Chat and embed calls queue for a slot of
the per-(host, model) limiter (``[ollama] max_parallel``, default 1 like
Ollama's own ``OLLAMA_NUM_PARALLEL``), and a 429/503 ``Retry-After`` header is
passed on to the retry layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal

import httpx
import ollama
from pydantic import BaseModel, Field

from tandem.workers.backends._base import (
    TOP_LOGPROBS,
    ChatMessage,
    ChatResult,
    EmbedResult,
    TokenCallback,
    TokenLogprob,
)
from tandem.workers.backends._host_config import OllamaHost
from tandem.workers.backends._limits import HostLimiter, limiter
from tandem.workers.errors import (
    BackendBusy,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ModelNotFound,
    RunError,
    parse_retry_after,
)

__all__ = [
    "EgressHook",
    "OllamaBackend",
    "OllamaSettings",
    "default_ollama_host",
    "translate_ollama_error",
]

EgressHook = Callable[[str, "str | None", str, bytes], Callable[[str, bool], None]]
"""``hook(model, host, purpose, payload)`` is called before a request to a *remote*
endpoint leaves (the runtime writes the egress log's ``sending`` line there) and returns
``done(outcome, sent)``, called when the request has ended."""


def default_ollama_host() -> str:
    """``OLLAMA_HOST`` if set (scheme added when missing), else the local default."""
    host = os.environ.get("OLLAMA_HOST", "").strip()
    if not host:
        return "http://127.0.0.1:11434"
    if "://" not in host:
        host = f"http://{host}"
    return host.rstrip("/")


class OllamaSettings(BaseModel):
    """How to reach Ollama."""

    host: str = Field(default_factory=default_ollama_host)
    """Base URL of the Ollama server (default: ``OLLAMA_HOST`` or http://127.0.0.1:11434)."""
    timeout: float = Field(default=120.0, gt=0)
    """Seconds to wait for one request (connect + full response); Ollama's client has none."""
    connect_timeout: float = Field(default=5.0, gt=0)
    """Seconds to wait for the TCP connection; a dead host fails fast."""
    keep_alive: str | float = "10m"
    """How long Ollama keeps a model loaded after a call (Go duration or seconds; -1 = forever)."""
    num_ctx: int | None = None
    """Context window to request (``options.num_ctx``); ``None`` keeps the model's default."""
    hosts: list[OllamaHost] = Field(default_factory=list)
    """Several Ollama servers (``[[ollama.hosts]]``: ``url``, ``weight``, ``models``,
    ``max_parallel``): each call goes to the least-loaded healthy one that serves the model,
    with failover; empty: only ``host``."""
    host_cooldown: float = Field(default=30.0, gt=0)
    """Seconds a host that refused connections gets no traffic (then it is probed with
    ``/api/version``; each further failure doubles the wait, up to 8x)."""
    max_parallel: int = Field(default=1, ge=1, le=64)
    """Requests in flight at once per model on this host; more wait in tandem's queue. Match
    the server's ``OLLAMA_NUM_PARALLEL`` (default 1)."""


def translate_ollama_error(
    exc: BaseException, *, model: str, host: str, worker: str | None = None
) -> RunError:
    """Map an exception from the ollama client to tandem's error tree.

    Args:
        exc: What the client raised.
        model: The Ollama model name (without the ``ollama:`` prefix).
        host: The server URL.
        worker: The worker on whose behalf the call was made.

    Returns:
        A :class:`RunError` subclass with a hint on what to do.
    """
    ref = f"ollama:{model}"
    common: dict[str, Any] = {"model": ref, "host": host, "worker": worker}
    if isinstance(exc, ollama.ResponseError):
        status, text = exc.status_code, str(exc.error)
        if status == 404:
            return ModelNotFound(
                f"model '{model}' not found on {host}",
                hint=f"run `ollama pull {model}` (or `tandem models pull {model}`)",
                **common,
            )
        if status in (429, 503):
            return BackendBusy(
                f"server busy ({status}): {text}",
                hint="lower concurrency or raise OLLAMA_NUM_PARALLEL / OLLAMA_MAX_QUEUE",
                **common,
            )
        if status == -1:
            return BackendRejected(
                f"error in the middle of a stream: {text}",
                hint="the server failed while generating; check its log and the model's memory",
                **common,
            )
        retryable = status >= 500
        return BackendRejected(
            f"Ollama answered {status}: {text}",
            hint="check the server log (`journalctl -u ollama` or `ollama serve` output)",
            retryable=retryable,
            **common,
        )
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeout(
            f"no answer within the timeout ({type(exc).__name__})",
            hint="raise [ollama] timeout in tandem.toml, or use a smaller model",
            **common,
        )
    if isinstance(exc, ConnectionError | httpx.TransportError | OSError):
        return BackendUnavailable(
            f"cannot connect to Ollama at {host}",
            hint="start it with `ollama serve`, or set [ollama] host / OLLAMA_HOST",
            **common,
        )
    return BackendRejected(f"unexpected error from the Ollama client: {exc!r}", **common)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One shared SSL context: httpx builds a new one per client otherwise (~80 ms a call)."""
    return httpx.create_ssl_context()


class OllamaBackend:
    """A model served by Ollama.

    Args:
        model: The Ollama model name (``qwen2.5:1.5b``).
        settings: Host, timeouts and keep-alive.
        worker: The worker name, used in error messages.
    """

    where: Literal["local", "remote"] = "local"
    egress: EgressHook | None = None
    """Set by the runtime on an endpoint classified remote: every chat/embed request is
    logged before it leaves and completed with its outcome."""

    def __init__(
        self, model: str, settings: OllamaSettings | None = None, *, worker: str | None = None
    ) -> None:
        self.model = model
        self.settings = settings or OllamaSettings()
        self.host: str | None = self.settings.host
        self.ref = f"ollama:{model}"
        self.worker = worker

    @property
    def limiter(self) -> HostLimiter:
        """The queue this backend's chat/embed calls wait in (shared per host and model)."""
        return limiter(self.settings.host, self.model, self.settings.max_parallel)

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[ollama.AsyncClient]:
        timeout = httpx.Timeout(self.settings.timeout, connect=self.settings.connect_timeout)
        retry_after: list[float] = []

        async def on_response(response: httpx.Response) -> None:
            if response.status_code in (429, 503):
                wait = parse_retry_after(response.headers.get("retry-after"))
                if wait is not None:
                    retry_after.append(wait)

        client = ollama.AsyncClient(
            host=self.settings.host,
            timeout=timeout,
            verify=_ssl_context(),
            event_hooks={"response": [on_response]},
        )
        try:
            yield client
        except RunError:
            raise
        except Exception as exc:
            error = translate_ollama_error(
                exc, model=self.model, host=self.settings.host, worker=self.worker
            )
            if retry_after and isinstance(error, BackendBusy):
                error.retry_after = retry_after[-1]
            raise error from exc
        finally:
            await client.close()  # type: ignore[no-untyped-call]

    @contextlib.asynccontextmanager
    async def _audited(self, purpose: str, request: dict[str, Any]) -> AsyncIterator[None]:
        """Log a request to a remote endpoint before it leaves, and how it ended."""
        if self.egress is None:
            yield
            return
        payload = json.dumps(request, ensure_ascii=False, default=str).encode()
        done = self.egress(self.ref, self.host, purpose, payload)
        try:
            yield
        except BackendUnavailable as exc:  # refused or unreachable: nothing left
            done(f"not sent: {exc}", False)
            raise
        except BaseException as exc:
            done(f"error: {exc}" if str(exc) else f"error: {type(exc).__name__}", True)
            raise
        done("ok", True)

    @contextlib.asynccontextmanager
    async def _deadline(self) -> AsyncIterator[None]:
        """``[ollama] timeout`` as a total deadline for connect + the whole response.

        httpx's timeout is per read: a server that trickles a token every second would
        never trip it. Time waiting for a slot in tandem's own queue does not count.
        """
        try:
            async with asyncio.timeout(self.settings.timeout):
                yield
        except TimeoutError:
            raise BackendTimeout(
                f"no complete reply within [ollama] timeout = {self.settings.timeout:g} s",
                hint="raise [ollama] timeout in tandem.toml, or use a smaller or faster model",
                model=self.ref,
                host=self.settings.host,
                worker=self.worker,
            ) from None

    def _options(self, max_tokens: int | None, temperature: float) -> dict[str, Any]:
        options: dict[str, Any] = {"temperature": temperature}
        if max_tokens is not None:
            options["num_predict"] = max_tokens
        if self.settings.num_ctx is not None:
            options["num_ctx"] = self.settings.num_ctx
        return options

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        on_token: TokenCallback | None = None,
        logprobs: bool = False,
    ) -> ChatResult:
        """Chat through ``/api/chat``; see :class:`~tandem.workers.backends.Backend`.

        With ``logprobs``, Ollama (0.12.11 or newer) returns each generated token's
        log-probability; an older server ignores the request and ``logprobs`` stays ``None``.
        """
        started = time.perf_counter()
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in messages],
            "options": self._options(max_tokens, temperature),
            "keep_alive": self.settings.keep_alive,
        }
        if schema is not None:
            kwargs["format"] = schema
        if logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = TOP_LOGPROBS
        tokens: list[Any] = []  # the client's Logprob entries, in order
        async with (
            self.limiter.slot(),
            self._audited("answer", kwargs),
            self._client() as client,
            self._deadline(),
        ):
            if on_token is None:
                response = await client.chat(**kwargs, stream=False)
                content = response.message.content or ""
                tokens.extend(response.logprobs or [])
                final = response
            else:
                pieces: list[str] = []
                final = None
                async for chunk in await client.chat(**kwargs, stream=True):
                    piece = chunk.message.content or ""
                    tokens.extend(chunk.logprobs or [])  # each chunk: its own tokens
                    if piece:
                        pieces.append(piece)
                        on_token(piece)
                    if chunk.done:
                        final = chunk
                content = "".join(pieces)
        return ChatResult(
            content=content,
            model=self.ref,
            host=self.host,
            tokens_in=(final.prompt_eval_count or 0) if final else 0,
            tokens_out=(final.eval_count or 0) if final else 0,
            seconds=time.perf_counter() - started,
            done_reason=(final.done_reason or "") if final else "",
            logprobs=[_token_logprob(t) for t in tokens] if logprobs and tokens else None,
        )

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        """Embed through ``/api/embed``."""
        started = time.perf_counter()
        request: dict[str, Any] = {
            "model": self.model,
            "input": list(texts),
            "keep_alive": self.settings.keep_alive,
        }
        async with (
            self.limiter.slot(),
            self._audited("embed", request),
            self._client() as client,
            self._deadline(),
        ):
            response = await client.embed(**request)
        vectors = [list(map(float, v)) for v in response.embeddings]
        if len(vectors) != len(texts):
            raise BackendRejected(
                f"asked for {len(texts)} embeddings, got {len(vectors)}",
                model=self.ref,
                host=self.host,
                worker=self.worker,
            )
        return EmbedResult(
            vectors=vectors,
            model=self.ref,
            host=self.host,
            tokens_in=response.prompt_eval_count or 0,
            seconds=time.perf_counter() - started,
        )

    async def list_models(self) -> list[str]:
        """Names of the models present on the server (``/api/tags``)."""
        async with self._client() as client:
            listing = await client.list()
        return [m.model or "" for m in listing.models]

    async def version(self) -> str:
        """The server's version (``/api/version``); a cheap health probe."""
        async with self._client() as client:
            response = await client._client.get("/api/version")
            response.raise_for_status()
        return str(json.loads(response.text).get("version", ""))


def _token_logprob(entry: Any) -> TokenLogprob:
    """The client's ``Logprob`` entry as a :class:`TokenLogprob` (alternatives best first)."""
    alternatives = sorted((a.logprob for a in entry.top_logprobs or []), reverse=True)
    return TokenLogprob(token=entry.token, logprob=entry.logprob, top=alternatives or None)
