"""Model engines behind one small protocol: Ollama and the embedded llama.cpp engine."""

from __future__ import annotations

from tandem.workers.backends._base import (
    Backend,
    ChatMessage,
    ChatResult,
    EmbedResult,
    TokenCallback,
)
from tandem.workers.backends._factory import BackendSettings, make_backend
from tandem.workers.backends.ollama import OllamaBackend, OllamaSettings

__all__ = [
    "Backend",
    "BackendSettings",
    "ChatMessage",
    "ChatResult",
    "EmbedResult",
    "OllamaBackend",
    "OllamaSettings",
    "TokenCallback",
    "make_backend",
]
