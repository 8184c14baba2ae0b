"""The one retry layer: exponential backoff with jitter for retryable run errors."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from tandem.workers.errors import RunError

__all__ = ["RetryPolicy", "with_retry"]

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


async def with_retry(call: Callable[[], Awaitable[T]], policy: RetryPolicy | None = None) -> T:
    """Await ``call()``, retrying retryable :class:`RunError` s per ``policy``.

    The error that finally escapes carries the number of attempts made.
    """
    policy = policy or RetryPolicy()
    delay = policy.initial_delay
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return await call()
        except RunError as exc:
            exc.attempts = attempt
            if not exc.retryable or attempt == policy.max_attempts:
                raise
        await asyncio.sleep(min(delay, policy.max_delay) * (1 + random.random() * policy.jitter))
        delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover
