"""Admission control: at most ``max_concurrent`` runs, a bounded queue, then 429."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["Admission", "Rejected"]


class Rejected(Exception):
    """No slot: the queue is full, or the wait in it ran out. ``retry_after`` in seconds."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Admission:
    """A FIFO slot pool for runs.

    Args:
        max_concurrent: Runs in progress at once.
        queue: Requests that may wait for a slot; one more is rejected at once.
        queue_timeout: Seconds a request waits in the queue before it is rejected.
    """

    def __init__(self, max_concurrent: int, queue: int, queue_timeout: float) -> None:
        self.max_concurrent = max_concurrent
        self.queue = queue
        self.queue_timeout = queue_timeout
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._durations: deque[float] = deque(maxlen=50)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def record(self, seconds: float) -> None:
        """Note a finished run's duration (for ``Retry-After``)."""
        self._durations.append(seconds)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: typical run time × queue length / slots."""
        typical = sorted(self._durations)[len(self._durations) // 2] if self._durations else 1.0
        ahead = self.waiting + 1
        return max(1, math.ceil(typical * ahead / self.max_concurrent))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one run slot for the block.

        Raises:
            Rejected: The queue is full or ``queue_timeout`` passed.
        """
        if self.active < self.max_concurrent and not self._waiters:
            self.active += 1
        else:
            if self.waiting >= self.queue:
                raise Rejected("too many requests in flight", self.retry_after())
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), self.queue_timeout)
            except TimeoutError:
                if not waiter.done():
                    self._waiters.remove(waiter)
                    raise Rejected("waited too long for a free slot", self.retry_after()) from None
                # the slot arrived just as the wait ran out: take it
            except BaseException:
                if waiter.done():  # a slot was handed over: pass it on
                    self._release()
                else:
                    self._waiters.remove(waiter)
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next in line
                return
        self.active -= 1
