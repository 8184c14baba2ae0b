"""Several Ollama servers behind one model: health, least-loaded choice, failover.

``[[ollama.hosts]]`` lists the servers (optionally weighted, optionally limited to
some models, each with its own concurrency cap). For every call the pool picks,
among the hosts that serve the model and are not cooling down, the one with the
fewest requests in flight relative to its weight, and sends the call through that
host's own :class:`~tandem.workers.backends.OllamaBackend` — so the per-(host,
model) queue of :mod:`._limits` caps each server separately.

A host that refuses connections (or resets them) is put into cooldown for
``host_cooldown`` seconds and the call moves to the next host at once; no run fails
while one host is alive. When the cooldown is over the host is probed with
``GET /api/version`` (cheap, loads no model) before it gets traffic again; a failed
probe doubles its cooldown (up to 8x). A busy host (503/429) is skipped for that call
without a cooldown. A reply that already streamed tokens is never replayed elsewhere.

Health is per server, shared by every model and worker of the process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

from tandem.workers.backends._base import ChatMessage, ChatResult, EmbedResult, TokenCallback
from tandem.workers.backends._host_config import OllamaHost
from tandem.workers.backends.ollama import OllamaBackend, OllamaSettings
from tandem.workers.errors import BackendBusy, BackendUnavailable, RunError

__all__ = ["HostHealth", "OllamaHost", "OllamaPool", "host_health", "reset_host_health"]

MAX_BACKOFF = 8
"""A host that keeps failing waits at most this many cooldowns between probes."""


class HostHealth:
    """What the process knows about one server: load, failures, cooldown."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.in_flight = 0
        """Calls from this process being sent to (or queued for) the host right now."""
        self.failures = 0
        """Consecutive connection failures (0 = healthy)."""
        self.down_until = 0.0
        """``time.monotonic()`` until which the host gets no traffic."""
        self.calls = 0
        """Calls started on this host."""
        self.probes = 0
        """Health probes sent to this host."""
        self.last_error = ""
        """Why it was last put into cooldown."""

    def cooling(self, now: float) -> bool:
        """Whether the host is still sitting out its cooldown."""
        return now < self.down_until

    def mark_down(self, cooldown: float, reason: str) -> None:
        """Put the host into cooldown (longer after each consecutive failure)."""
        self.failures += 1
        factor = min(2 ** (self.failures - 1), MAX_BACKOFF)
        self.down_until = time.monotonic() + cooldown * factor
        self.last_error = reason

    def mark_up(self) -> None:
        """The host answered: healthy again."""
        self.failures = 0
        self.down_until = 0.0


_HEALTH: dict[str, HostHealth] = {}
_HEALTH_LOCK = threading.Lock()


def host_health(url: str) -> HostHealth:
    """The process-wide health record of the server at ``url``."""
    key = url.rstrip("/")
    with _HEALTH_LOCK:
        if key not in _HEALTH:
            _HEALTH[key] = HostHealth(key)
        return _HEALTH[key]


def reset_host_health() -> None:
    """Forget every host's health (tests)."""
    with _HEALTH_LOCK:
        _HEALTH.clear()


class OllamaPool:
    """One Ollama model served by several hosts; a drop-in :class:`Backend`.

    Args:
        model: The Ollama model name.
        settings: ``[ollama]`` settings with ``hosts``; timeouts and keep-alive apply to all.
        worker: The worker name, used in error messages.
    """

    where: Literal["local", "remote"] = "local"

    def __init__(self, model: str, settings: OllamaSettings, *, worker: str | None = None) -> None:
        hosts = [h for h in settings.hosts if h.serves(model)]
        if not hosts:
            raise ValueError(f"no [[ollama.hosts]] entry serves model '{model}'")
        self.model = model
        self.ref = f"ollama:{model}"
        self.worker = worker
        self.settings = settings
        self.hosts = hosts
        self.host: str | None = hosts[0].url
        """The first host (calls record the host that really answered)."""
        self.cooldown = settings.host_cooldown
        self.backends: dict[str, OllamaBackend] = {
            h.url: OllamaBackend(
                model,
                settings.model_copy(
                    update={
                        "host": h.url,
                        "hosts": [],
                        "max_parallel": h.max_parallel or settings.max_parallel,
                    }
                ),
                worker=worker,
            )
            for h in hosts
        }

    # -- choosing a host --------------------------------------------------------------------
    async def _probe(self, health: HostHealth) -> bool:
        health.probes += 1
        try:
            await asyncio.wait_for(
                self.backends[health.url].version(), self.settings.connect_timeout + 1
            )
        except (RunError, TimeoutError) as exc:
            health.mark_down(self.cooldown, f"health probe failed: {exc}")
            return False
        health.mark_up()
        return True

    async def _pick(self, tried: set[str]) -> HostHealth | None:
        """The least-loaded usable host not tried yet for this call (probing recovered ones)."""
        while True:
            now = time.monotonic()
            candidates = [(h, host_health(h.url)) for h in self.hosts if h.url not in tried]
            ready = [(h, s) for h, s in candidates if not s.cooling(now)]
            if not ready:
                if not candidates:
                    return None
                # Every host left is cooling down: rather than fail the call, probe the one
                # that has waited longest — it may be back already.
                host, health = min(candidates, key=lambda hs: hs[1].down_until)
                tried.add(host.url)
                if await self._probe(health):
                    return health
                continue
            # Fewest in flight per unit of weight; ties go to the heavier, then listed first.
            host, health = min(
                ready, key=lambda hs: (hs[1].in_flight / hs[0].weight, -hs[0].weight)
            )
            if health.failures and not await self._probe(health):
                tried.add(host.url)  # it failed again: next candidate
                continue
            return health

    async def _run(self, call: Any, streamed: list[bool]) -> Any:
        tried: set[str] = set()
        last: RunError | None = None
        while True:
            health = await self._pick(tried)
            if health is None:
                break
            tried.add(health.url)
            health.in_flight += 1
            health.calls += 1
            try:
                result = await call(self.backends[health.url])
            except BackendUnavailable as exc:
                health.mark_down(self.cooldown, str(exc))
                last = exc
                if streamed[0]:
                    raise
                continue
            except BackendBusy as exc:
                last = exc
                if streamed[0]:
                    raise
                continue
            finally:
                health.in_flight -= 1
            health.mark_up()
            return result
        if last is not None:
            raise last
        raise BackendUnavailable(
            f"every Ollama host for '{self.model}' is cooling down after failures "
            f"({'; '.join(self._status())})",
            model=self.ref,
            host=", ".join(h.url for h in self.hosts),
            worker=self.worker,
            hint="start the servers again or check [[ollama.hosts]]; failed hosts are retried "
            f"after {self.cooldown:g} s",
        )

    def _status(self) -> list[str]:
        now = time.monotonic()
        out = []
        for h in self.hosts:
            health = host_health(h.url)
            left = max(0.0, health.down_until - now)
            out.append(f"{h.url} back in {left:.0f} s" if left else f"{h.url} up")
        return out

    # -- Backend protocol ---------------------------------------------------------------------
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
        """Chat on the least-loaded healthy host, failing over on connection errors."""
        streamed = [False]
        relay: TokenCallback | None = None
        if on_token is not None:
            sink = on_token

            def relay(piece: str) -> None:
                streamed[0] = True
                sink(piece)

        async def call(backend: OllamaBackend) -> ChatResult:
            return await backend.chat(
                messages,
                schema=schema,
                max_tokens=max_tokens,
                temperature=temperature,
                on_token=relay,
                logprobs=logprobs,
            )

        result: ChatResult = await self._run(call, streamed)
        return result

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        """Embed on the least-loaded healthy host, failing over on connection errors."""

        async def call(backend: OllamaBackend) -> EmbedResult:
            return await backend.embed(texts)

        result: EmbedResult = await self._run(call, [False])
        return result

    async def list_models(self) -> list[str]:
        """Models present on the first healthy host."""

        async def call(backend: OllamaBackend) -> list[str]:
            return await backend.list_models()

        result: list[str] = await self._run(call, [False])
        return result

    async def version(self) -> str:
        """The version of the first healthy host."""

        async def call(backend: OllamaBackend) -> str:
            return await backend.version()

        result: str = await self._run(call, [False])
        return result
