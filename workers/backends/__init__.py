"""Model engines behind one small protocol: Ollama, the embedded llama.cpp engine and the
bundled ONNX embedding model."""

from __future__ import annotations

from tandem.workers.backends._base import (
    Backend,
    ChatMessage,
    ChatResult,
    EmbedResult,
    TokenCallback,
    TokenLogprob,
    TokenMeasure,
    cosine,
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
    "TokenLogprob",
    "TokenMeasure",
    "cosine",
    "default_cache_dir",
    "ensure_model",
    "make_backend",
]
