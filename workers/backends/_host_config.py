"""One Ollama server of a pool (``[[ollama.hosts]]``), as the configuration declares it.

Kept apart from the pool (:mod:`._hosts`) so that :class:`~.ollama.OllamaSettings` can
hold a list of hosts while the pool builds on :class:`~.ollama.OllamaBackend`: settings
→ backend → pool, one way.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["OllamaHost"]


class OllamaHost(BaseModel):
    """One Ollama server in the pool (``[[ollama.hosts]]``; a bare URL string also works)."""

    model_config = ConfigDict(extra="forbid")

    url: str
    """The server's base URL (``http://gpu-1:11434``)."""
    weight: float = Field(default=1.0, gt=0)
    """Share of the traffic relative to the other hosts (2 = takes twice as many requests)."""
    models: list[str] = Field(default_factory=list)
    """Models this host serves (Ollama names, ``qwen2.5:1.5b``); empty: every model."""
    max_parallel: int | None = Field(default=None, ge=1, le=64)
    """Requests in flight per model on this host (its ``OLLAMA_NUM_PARALLEL``);
    default: ``[ollama] max_parallel``."""

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _normalise(self) -> OllamaHost:
        url = self.url.strip().rstrip("/")
        if not url:
            raise ValueError("a host URL cannot be empty")
        self.url = url if "://" in url else f"http://{url}"
        return self

    def serves(self, model: str) -> bool:
        """Whether this host is meant to serve ``model``."""
        return not self.models or model in self.models
