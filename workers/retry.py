"""The one retry layer: exponential backoff with jitter for retryable run errors.

Only errors marked ``retryable`` are retried (connection refused/reset,
timeouts, busy servers, 5xx); a missing model, a bad request or bad output
never is. When a busy server says how long to wait (``Retry-After`` on an HTTP
429/503, carried as :attr:`RunError.retry_after`), the next attempt waits at
least that long; a server asking for more than ``max_retry_after`` seconds is
not waited for at all: the error is raised at once so the run can fall back.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from tandem.workers.errors import RunError

__all__ = ["RetryPolicy", "retry_delay", "with_retry"]

T = TypeVar("T")


class RetryPolicy(BaseModel):
    """When and how often to retry a failed model call.

    Only errors marked ``retryable`` (connection refused/reset, timeouts, busy
    servers, 5xx) are retried; a missing model or a bad request never is.
    """

    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(default=3, ge=1, le=10)
    """Total attempts including the first."""
    initial_delay: float = Field(default=0.5, ge=0)
    """Seconds before the first retry."""
    max_delay: float = Field(default=8.0, ge=0)
    """Upper bound for one backoff delay."""
    jitter: float = Field(default=0.25, ge=0, le=1)
    """Random spread added to each delay, as a fraction of it."""
    max_retry_after: float = Field(default=30.0, ge=0)
    """Longest ``Retry-After`` (seconds) worth waiting for; a longer one fails the call at once."""


def retry_delay(policy: RetryPolicy, attempt: int, error: RunError) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up now.

    Args:
        policy: The retry policy.
        attempt: The attempt that just failed (1-based).
        error: What it failed with.
    """
    if not error.retryable or attempt >= policy.max_attempts:
        return None
    backoff = float(min(policy.initial_delay * 2 ** (attempt - 1), policy.max_delay))
    backoff *= 1 + random.random() * policy.jitter
    wait = error.retry_after
    if wait is None:
        return backoff
    if wait > policy.max_retry_after:
        return None
    return max(backoff, float(wait))


async def with_retry(call: Callable[[], Awaitable[T]], policy: RetryPolicy | None = None) -> T:
    """Await ``call()``, retrying retryable :class:`RunError` s per ``policy``.

    The error that finally escapes carries the number of attempts made and what they may
    have cost together (:attr:`RunError.cost_usd`).
    """
    policy = policy or RetryPolicy()
    attempt = 0
    cost = 0.0
    while True:
        attempt += 1
        try:
            return await call()
        except RunError as exc:
            exc.attempts = attempt
            cost += exc.cost_usd
            exc.cost_usd = cost  # what every attempt so far may have cost
            delay = retry_delay(policy, attempt, exc)
            if delay is None:
                raise
        await asyncio.sleep(delay)
