"""Large-model clients for the supervisor: litellm, a tandem backend, or a LangChain model.

All three return a :class:`LLMReply` with token counts, cost and whether the
call left the machine; third-party errors become tandem errors here.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import weakref
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import httpx
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel

from tandem.agents.cost import call_cost
from tandem.workers.backends import Backend, ChatMessage, TokenCallback
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
    "BackendLLM",
    "LLMReply",
    "LangChainLLM",
    "LiteLLM",
    "SupervisorLLM",
    "translate_litellm_error",
]


class LLMReply(BaseModel):
    """A finished supervisor call."""

    content: str
    model: str
    where: Literal["local", "remote"]
    host: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    bytes_sent: int = 0


class SupervisorLLM(Protocol):
    """What the supervisor needs from a large model."""

    model: str
    where: Literal["local", "remote"]

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict[str, Any] | None = None,
        schema_name: str = "reply",
        on_token: TokenCallback | None = None,
    ) -> LLMReply:
        """One completion; with ``schema`` the reply is a JSON string following it."""
        ...


def _missing_credentials(lowered: str) -> bool:
    """Whether an error message says no API key was configured (checked before sending)."""
    return any(
        phrase in lowered
        for phrase in (
            "missing credentials",
            "api_key client option must be set",
            "no api key",
            "missing api key",
            "api key not found",
        )
    ) or ("api key" in lowered and "missing" in lowered)


def _connection_failed(exc: BaseException) -> bool:
    """True when a refused/failed connection caused ``exc`` (litellm reports some as 500s)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ConnectionError | httpx.ConnectError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _retry_after(exc: BaseException) -> float | None:
    """The ``Retry-After`` a rate-limited/busy provider sent with ``exc``, in seconds."""
    sources: list[Any] = [
        getattr(exc, "headers", None),
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ]
    for headers in sources:
        if not headers:
            continue
        try:
            value = headers.get("retry-after") or headers.get("Retry-After")
        except AttributeError:
            continue
        if value:
            return parse_retry_after(str(value))
    return None


def translate_litellm_error(exc: BaseException, *, model: str, host: str | None) -> RunError:
    """Map a litellm (OpenAI-style) exception to tandem's error tree."""
    import litellm.exceptions as litellm

    common: dict[str, Any] = {"model": model, "host": host, "retry_after": _retry_after(exc)}
    text = str(getattr(exc, "message", None) or exc).strip()[:300]
    lowered = text.lower()
    if isinstance(exc, litellm.AuthenticationError) or _missing_credentials(lowered):
        # litellm reports a missing key as a 401, or (openai) as a 500 raised before any
        # request is made: never retried, and nothing left the machine.
        before = _missing_credentials(lowered) or "missing" in lowered
        return BackendRejected(
            f"authentication failed: {text}",
            hint="set the provider's API key (e.g. OPENAI_API_KEY) or [supervisor] extra.api_key",
            not_sent=before,
            **common,
        )
    if "llm provider not provided" in lowered or "provider not provided" in lowered:
        return BackendRejected(
            f"unknown provider in model '{model}'",
            hint="use a litellm provider prefix (openai/, anthropic/, ollama_chat/ …); "
            "`tandem doctor` checks every model reference",
            not_sent=True,
            **common,
        )
    if isinstance(exc, litellm.Timeout):
        return BackendTimeout(
            "the supervisor did not answer in time", hint="raise [supervisor] timeout", **common
        )
    if isinstance(exc, litellm.APIConnectionError) or _connection_failed(exc):
        return BackendUnavailable(
            f"cannot reach the supervisor endpoint: {text}",
            hint="check [supervisor] api_base and your network",
            not_sent=_connection_failed(exc),  # no connection: the request never left
            **common,
        )
    if isinstance(exc, litellm.RateLimitError):
        return BackendBusy(
            f"rate limited: {text}", hint="retry later or lower concurrency", **common
        )
    if isinstance(exc, litellm.NotFoundError):
        return ModelNotFound(
            f"model not found: {text}", hint="check [supervisor] model and api_base", **common
        )
    if isinstance(exc, litellm.ServiceUnavailableError | litellm.InternalServerError):
        return BackendBusy(f"provider error: {text}", **common)
    if isinstance(exc, litellm.BadRequestError):
        return BackendRejected(f"request rejected: {text}", **common)
    return BackendRejected(f"supervisor call failed: {type(exc).__name__}: {text}", **common)


_LOOPS: dict[int, weakref.ref[asyncio.AbstractEventLoop]] = {}


def _forget_stale_clients(litellm: Any) -> None:
    """Drop litellm's cached HTTP clients that belong to a dead event loop.

    litellm caches async clients under ``id(loop)``. When a loop is closed and a new
    one is allocated at the same address, litellm would hand the new loop a client
    bound to the dead one and the request hangs. We remember which loop object each
    id belonged to and purge that id's cache entries when the object changes.
    """
    loop = asyncio.get_running_loop()
    ref = _LOOPS.get(id(loop))
    if ref is not None and ref() is loop:
        return
    _LOOPS[id(loop)] = weakref.ref(loop)
    cache = getattr(litellm, "in_memory_llm_clients_cache", None)
    entries = getattr(cache, "cache_dict", None)
    if cache is None or entries is None:
        return
    suffix = f"-{id(loop)}"
    for key in [k for k in list(entries) if str(k).endswith(suffix)]:
        cache.delete_cache(key)


def _payload_size(messages: Sequence[ChatMessage]) -> int:
    return len(json.dumps(list(messages), ensure_ascii=False).encode())


class LiteLLM:
    """Any litellm model string (``openai/gpt-4o-mini``, ``anthropic/…``, ``ollama_chat/…``).

    Args:
        model: The litellm model string.
        api_base: Endpoint override (an OpenAI-compatible server, a remote Ollama …).
        timeout: Seconds per call (litellm's own default is 6000).
        max_tokens: Cap on generated tokens.
        temperature: Sampling temperature.
        extra: More keyword arguments for ``litellm.acompletion``.
        where: Whether calls leave the machine, as classified by the caller
            (:func:`~tandem.agents.privacy.endpoints.classify_endpoint`); remote unless told.
        where_reason: Why (shown by ``tandem doctor`` and the REPL banner).
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        timeout: float = 60.0,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        extra: dict[str, Any] | None = None,
        where: Literal["local", "remote"] = "remote",
        where_reason: str = "not classified: treated as remote",
    ) -> None:
        self.model = model
        self.api_base = api_base
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.extra = dict(extra or {})
        host = api_base
        if host is None and model.startswith(("ollama/", "ollama_chat/")):
            host = os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434")
        self.host = host
        self.where: Literal["local", "remote"] = where
        self.where_reason = where_reason

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict[str, Any] | None = None,
        schema_name: str = "reply",
        on_token: TokenCallback | None = None,
    ) -> LLMReply:
        """Call ``litellm.acompletion`` with an explicit timeout and no hidden retries."""
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banner per error
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "timeout": self.timeout,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "num_retries": 0,
            "max_retries": 0,
            **self.extra,
        }
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema},
            }
        started = time.perf_counter()
        try:
            # [supervisor] timeout bounds the whole call: a stream that trickles tokens
            # never trips a per-read timeout.
            async with asyncio.timeout(self.timeout):
                if on_token is None:
                    response = await litellm.acompletion(**kwargs)
                    content = response.choices[0].message.content or ""
                    usage = getattr(response, "usage", None)
                    cost = (getattr(response, "_hidden_params", {}) or {}).get("response_cost")
                else:
                    pieces: list[str] = []
                    usage = None
                    stream = await litellm.acompletion(
                        **kwargs, stream=True, stream_options={"include_usage": True}
                    )
                    async for chunk in stream:
                        if chunk.choices and (piece := chunk.choices[0].delta.content):
                            pieces.append(piece)
                            on_token(piece)
                        usage = getattr(chunk, "usage", None) or usage
                    content = "".join(pieces)
                    cost = None
        except TimeoutError:
            raise BackendTimeout(
                f"no complete reply within [supervisor] timeout = {self.timeout:g} s",
                hint="raise [supervisor] timeout",
                model=self.model,
                host=self.host,
            ) from None
        except Exception as exc:
            raise translate_litellm_error(exc, model=self.model, host=self.host) from exc
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
        if cost is None:
            cost = call_cost(self.model, tokens_in, tokens_out)
        return LLMReply(
            content=content,
            model=self.model,
            where=self.where,
            host=self.host,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=0.0 if self.where == "local" else float(cost or 0.0),
            seconds=time.perf_counter() - started,
            bytes_sent=_payload_size(messages),
        )


class BackendLLM:
    """A tandem backend (embedded engine or Ollama) acting as supervisor; always local."""

    def __init__(self, backend: Backend, *, max_tokens: int = 1024, temperature: float = 0.0):
        self.backend = backend
        self.model = backend.ref
        self.where: Literal["local", "remote"] = backend.where
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict[str, Any] | None = None,
        schema_name: str = "reply",
        on_token: TokenCallback | None = None,
    ) -> LLMReply:
        res = await self.backend.chat(
            messages,
            schema=schema,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            on_token=on_token,
        )
        return LLMReply(
            content=res.content,
            model=self.model,
            where=self.where,
            host=res.host,
            tokens_in=res.tokens_in,
            tokens_out=res.tokens_out,
            seconds=res.seconds,
            bytes_sent=_payload_size(messages),
        )


class LangChainLLM:
    """Any LangChain ``BaseChatModel`` as supervisor (treated as remote unless told)."""

    def __init__(
        self, chat_model: BaseChatModel, *, where: Literal["local", "remote"] = "remote"
    ) -> None:
        self.chat_model = chat_model
        self.model = str(
            getattr(chat_model, "model_name", None)
            or getattr(chat_model, "model", None)
            or type(chat_model).__name__
        )
        self.where = where

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict[str, Any] | None = None,
        schema_name: str = "reply",
        on_token: TokenCallback | None = None,
    ) -> LLMReply:
        lc_messages = [(m["role"], m["content"]) for m in messages]
        if schema is not None:
            lc_messages.append(
                ("user", f"Reply with JSON only, following this schema: {json.dumps(schema)}")
            )
        started = time.perf_counter()
        try:
            if on_token is None:
                msg = await self.chat_model.ainvoke(lc_messages)
            else:
                msg = None
                async for chunk in self.chat_model.astream(lc_messages):
                    on_token(str(chunk.content))
                    msg = chunk if msg is None else msg + chunk
        except RunError:
            raise
        except Exception as exc:
            raise BackendRejected(
                f"LangChain model failed: {type(exc).__name__}: {exc}", model=self.model
            ) from exc
        usage = getattr(msg, "usage_metadata", None) or {}
        return LLMReply(
            content=str(getattr(msg, "content", "")),
            model=self.model,
            where=self.where,
            tokens_in=int(usage.get("input_tokens", 0)),
            tokens_out=int(usage.get("output_tokens", 0)),
            seconds=time.perf_counter() - started,
            bytes_sent=_payload_size(messages),
        )
