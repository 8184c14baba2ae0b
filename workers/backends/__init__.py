"""Model engines behind one small protocol: Ollama and the embedded llama.cpp engine."""

from __future__ import annotations

from tandem.workers.backends._base import (
    Backend,
    ChatMessage,
    ChatResult,
    EmbedResult,
    TokenCallback,
)
from tandem.workers.backends._bundled import BUNDLED_MODELS, default_cache_dir, ensure_model
from tandem.workers.backends._factory import BackendSettings, make_backend
from tandem.workers.backends.ollama import OllamaBackend, OllamaSettings

__all__ = [
    "BUNDLED_MODELS",
    "Backend",
    "BackendSettings",
    "ChatMessage",
    "ChatResult",
    "EmbedResult",
    "OllamaBackend",
    "OllamaSettings",
    "TokenCallback",
    "default_cache_dir",
    "ensure_model",
    "make_backend",
]
