"""tandem's error types: every failure a user can meet, translated at the edge.

Third-party exceptions (``httpx``, ``ollama.ResponseError``, the builtin
``ConnectionError``, litellm's exceptions, chromadb's errors) never reach a
user: backends and stores translate them into this tree, naming the worker,
model and host and saying what to do next.

Hierarchy::

    TandemError                     base class of everything tandem raises
    ├── UsageError                  the caller must change something; retrying will not help
    │   ├── ConfigError             bad tandem.toml / env / WorkerSpec (file, key, expected)
    │   ├── PluginError             a plugin entry point that cannot be loaded or is invalid
    │   └── ModelAssetError         bundled GGUF weights missing or failing their checksum
    └── RunError                    a model call / store operation failed while answering
        ├── BackendUnavailable      connection refused/reset: server not running  (retryable)
        ├── BackendTimeout          no answer within the timeout                  (retryable)
        ├── BackendBusy             overloaded (Ollama 503, HTTP 429)             (retryable)
        ├── ModelNotFound           the model is not present on that server (HTTP 404)
        ├── BackendRejected         any other refusal (400, 401, 500 …) — message from the server
        ├── BadModelOutput          output that does not parse/validate, even after repair
        ├── StoreError              the retrieval store (Chroma) failed: locked, corrupt …
        ├── DeadlineExceeded        the run's deadline passed before this step finished
        └── BudgetExceeded          a per-run budget ([cost]) stopped a large-model call

Every :class:`RunError` carries ``worker``, ``model``, ``host``, ``attempts``
and ``retryable`` so callers (and the single retry layer) can decide what to
do without parsing messages; a busy server's ``Retry-After`` travels as
``retry_after`` (seconds) and the retry layer waits at least that long.

Where each failure ends up (see ``tandem.graphs`` for the fallbacks)::

    worker model call fails  → the worker's fallback model/host → the supervisor answers the
                               subtask (if egress allows) → a degraded answer naming the part
    supervisor unreachable   → worker results are joined locally, with a note
    store locked / corrupt   → the worker answers without retrieval (``grounded=False``) and
                               the error is reported once, with the fix
    run deadline reached     → whatever finished is returned, with a note on what did not
    budget would be exceeded → the call is not made; the answer comes from the worker results
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendBusy",
    "BackendRejected",
    "BackendTimeout",
    "BackendUnavailable",
    "BadModelOutput",
    "BudgetExceeded",
    "ConfigError",
    "DeadlineExceeded",
    "ModelAssetError",
    "ModelNotFound",
    "PluginError",
    "RunError",
    "StoreError",
    "TandemError",
    "UsageError",
    "parse_retry_after",
]


class TandemError(Exception):
    """Base class for every error tandem raises on purpose.

    Args:
        message: What went wrong, in one sentence.
        hint: What the user can do about it (a command, a setting).
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message


class UsageError(TandemError):
    """The input, configuration or installation must change; retrying will not help."""


class ConfigError(UsageError):
    """A configuration problem, located by file and key."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.key = key
        where = ", ".join(part for part in (file, f"key '{key}'" if key else None) if part)
        super().__init__(f"{where}: {message}" if where else message, hint=hint)


class PluginError(UsageError):
    """A plugin entry point failed to load or returned something invalid."""


class ModelAssetError(UsageError):
    """Bundled model weights are missing, incomplete or corrupt."""


class RunError(TandemError):
    """A failure while answering: a model call or a store operation.

    Attributes:
        worker: The worker involved, or ``None`` for the supervisor/router.
        model: The model reference (``ollama:qwen2.5:1.5b``, ``openai/gpt-4o-mini`` …).
        host: The server that was called, when there is one.
        attempts: How many attempts were made before giving up.
        retryable: Whether trying again later may succeed.
        retry_after: Seconds the server asked us to wait (``Retry-After``), if it said.
        not_sent: The request never left this machine (missing credentials, an unknown
            provider, a refused connection): nothing was sent, nothing can be billed.
        cost_usd: What the failed attempts may have cost (a timed-out request at its worst
            case: the provider may have billed it), summed over attempts.
    """

    retryable_default = False

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        worker: str | None = None,
        model: str | None = None,
        host: str | None = None,
        attempts: int = 1,
        retryable: bool | None = None,
        retry_after: float | None = None,
        not_sent: bool = False,
    ) -> None:
        self.worker = worker
        self.model = model
        self.host = host
        self.attempts = attempts
        self.retryable = self.retryable_default if retryable is None else retryable
        self.retry_after = retry_after
        self.not_sent = not_sent
        self.cost_usd = 0.0
        super().__init__(message, hint=hint)

    def __str__(self) -> str:
        who = []
        if self.worker:
            who.append(f"worker '{self.worker}'")
        if self.model:
            who.append(f"model '{self.model}'")
        if self.host:
            who.append(f"on {self.host}")
        prefix = f"[{' '.join(who)}] " if who else ""
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        text = f"{prefix}{self.message}{tries}"
        return f"{text}: {self.hint}" if self.hint else text


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    Returns ``None`` when the header is absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class BackendUnavailable(RunError):
    """The server refused or dropped the connection."""

    retryable_default = True


class BackendTimeout(RunError):
    """The call did not finish within its timeout."""

    retryable_default = True


class BackendBusy(RunError):
    """The server is overloaded or rate-limiting."""

    retryable_default = True


class ModelNotFound(RunError):
    """The model is not available on the server."""


class BackendRejected(RunError):
    """The server rejected the request for another reason."""


class BadModelOutput(RunError):
    """The model's output could not be parsed or validated."""


class StoreError(RunError):
    """The retrieval store failed.

    Attributes:
        problem: ``locked`` (another process holds it; retryable later), ``corrupt`` (rebuild
            it), ``unreachable`` (a Chroma server) or ``other``.
    """

    def __init__(self, message: str, *, problem: str = "other", **kwargs: Any) -> None:
        self.problem = problem
        super().__init__(message, **kwargs)


class DeadlineExceeded(RunError):
    """The run reached its deadline (``[reliability] deadline``) before this step finished."""


class BudgetExceeded(RunError):
    """A per-run budget (``[cost]``) would be exceeded by the next large-model call.

    Nothing was sent; the run goes on with what the workers answered.
    """
