"""Per-host concurrency limits: a queue in front of each (host, model), not a flood.

Ollama answers ``OLLAMA_NUM_PARALLEL`` requests per loaded model at a time (1
by default) and queues the rest server-side, up to ``OLLAMA_MAX_QUEUE`` before
it starts answering 503. tandem queues on its side instead: every call to a
(host, model) first takes one of ``limit`` slots, waiting in FIFO order.

The limiter works across event loops and threads (sync ``invoke`` runs nodes on
tandem's background loop, ``ainvoke`` on the caller's), so one process never
sends more than ``limit`` requests at once to one model on one host, whoever
calls. Slots are keyed by host so a multi-host pool can limit each server
separately; :func:`limiter` is the shared registry.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import AsyncIterator

__all__ = ["HostLimiter", "LimitStats", "limiter", "reset_limiters"]


class LimitStats:
    """Counters of one limiter (for tests, benchmarks and ``tandem`` diagnostics)."""

    def __init__(self) -> None:
        self.active = 0
        """Calls holding a slot right now."""
        self.max_active = 0
        """The most calls that ever held a slot at the same time."""
        self.waiting = 0
        """Calls queued for a slot right now."""
        self.max_waiting = 0
        """The longest the queue has been."""
        self.total = 0
        """Slots handed out so far."""


_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class HostLimiter:
    """At most ``limit`` concurrent calls to one (host, model); the rest wait in order.

    Args:
        host: The server URL (``None`` for in-process engines).
        model: The model name on that server.
        limit: Concurrent calls allowed (Ollama's ``OLLAMA_NUM_PARALLEL``).
    """

    def __init__(self, host: str | None, model: str, limit: int = 1) -> None:
        if limit < 1:
            raise ValueError(f"a concurrency limit must be at least 1, got {limit}")
        self.host = host
        self.model = model
        self.limit = limit
        self.stats = LimitStats()
        self._lock = threading.Lock()
        self._waiters: collections.deque[_Waiter] = collections.deque()

    def set_limit(self, limit: int) -> None:
        """Change the limit; queued calls proceed if it grew."""
        if limit < 1:
            raise ValueError(f"a concurrency limit must be at least 1, got {limit}")
        with self._lock:
            self.limit = limit
            while self._waiters and self.stats.active < self.limit:
                self._grant_next()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the duration of the ``async with`` block."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        """Wait for a slot (FIFO). Cancelling the wait gives the place up."""
        with self._lock:
            if self.stats.active < self.limit and not self._waiters:
                self._take()
                return
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            waiter = (loop, fut)
            self._waiters.append(waiter)
            self.stats.waiting += 1
            self.stats.max_waiting = max(self.stats.max_waiting, self.stats.waiting)
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    self.stats.waiting -= 1
                    raise
            # The slot was already handed to us: give it back (unless the grant callback,
            # seeing the future cancelled, does it itself).
            if fut.done() and not fut.cancelled():
                self.release()
            raise

    def release(self) -> None:
        """Give a slot back; the longest-waiting call gets it."""
        with self._lock:
            self.stats.active -= 1
            if self._waiters:
                self._grant_next()

    # -- internals (called with the lock held) ----------------------------------------------
    def _take(self) -> None:
        self.stats.active += 1
        self.stats.total += 1
        self.stats.max_active = max(self.stats.max_active, self.stats.active)

    def _grant_next(self) -> None:
        while self._waiters:
            loop, fut = self._waiters.popleft()
            self.stats.waiting -= 1
            if loop.is_closed() or fut.done():
                continue
            self._take()
            try:
                loop.call_soon_threadsafe(self._resolve, fut)
            except RuntimeError:  # the loop closed between the check and the call
                self.stats.active -= 1
                continue
            return

    def _resolve(self, fut: asyncio.Future[None]) -> None:
        if fut.cancelled():
            self.release()
        else:
            fut.set_result(None)


_REGISTRY: dict[tuple[str | None, str], HostLimiter] = {}
_REGISTRY_LOCK = threading.Lock()


def limiter(host: str | None, model: str, limit: int = 1) -> HostLimiter:
    """The process-wide limiter for (``host``, ``model``), created on first use.

    A later call with a different ``limit`` changes it: the configuration that built
    the most recent backend wins (one process normally has one configuration).
    """
    key = (host.rstrip("/") if host else host, model)
    with _REGISTRY_LOCK:
        found = _REGISTRY.get(key)
        if found is None:
            found = _REGISTRY[key] = HostLimiter(key[0], model, limit)
            return found
    if found.limit != limit:
        found.set_limit(limit)
    return found


def reset_limiters() -> None:
    """Forget every limiter (tests); calls holding a slot keep their own object."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
