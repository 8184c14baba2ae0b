"""Reliability settings (``[reliability]``): deadline, fallbacks and input bounds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tandem.workers.spec import parse_model_ref

__all__ = ["ReliabilitySettings", "WorkerFallback"]


class WorkerFallback(BaseModel):
    """Where a worker's subtask goes when its own model fails (``[reliability.fallbacks.X]``).

    At least one of ``model`` and ``host`` must be set; a missing one keeps the worker's own.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    """Another model for the same worker (``ollama:qwen2.5:0.5b``, ``embedded:…``)."""
    host: str | None = None
    """Another Ollama server (``http://gpu-box:11434``) for the worker's model."""

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        if value is not None:
            parse_model_ref(value)
        return value

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        return value if "://" in value else f"http://{value}"


class ReliabilitySettings(BaseModel):
    """How a run copes with failures and oversized input (``[reliability]``)."""

    model_config = ConfigDict(extra="forbid")

    deadline: float | None = Field(default=600.0, gt=0)
    """Seconds one run may take, end to end; then it answers with what finished and says
    what did not. ``None`` (env ``null``) disables it. A resumed run keeps its original one."""
    embedded_deadline: float | None = Field(default=3600.0, gt=0)
    """Used instead of ``deadline`` when the run uses a model on the embedded (CPU) engine:
    a planned run of the bundled models takes ~10 minutes on a 2-core machine."""
    fallbacks: dict[str, WorkerFallback] = Field(default_factory=dict)
    """Per worker name: another model and/or Ollama host to try when its model call fails."""
    escalate_failed: bool = True
    """Ask the supervisor to answer a subtask whose worker failed (only when the privacy
    policy lets the query reach it); otherwise the answer names the missing part."""
    max_query_chars: int = Field(default=8000, ge=100, le=200_000)
    """Longest query accepted; a longer one is refused with a clear error (ingest long
    material into a worker's store instead)."""
    max_thread_messages: int = Field(default=40, ge=4, le=10_000)
    """Messages kept in a conversation thread; older turns are dropped from it (prompts only
    ever see the last few) so a long-running thread stays small."""
    store_timeout: float = Field(default=20.0, gt=0)
    """Seconds one retrieval-store operation may take before the store counts as locked."""
