"""Turn a model reference (``ollama:…`` / ``embedded:…``) into a backend.

``embedded:<name>`` is served by the llama.cpp engine for bundled GGUF models and by
the ONNX embedding engine for bundled ONNX models (``embedded:minilm``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from tandem.workers.backends._base import Backend
from tandem.workers.backends._bundled import BUNDLED_MODELS
from tandem.workers.backends._hosts import OllamaPool
from tandem.workers.backends.ollama import OllamaBackend, OllamaSettings
from tandem.workers.modelref import parse_model_ref

if TYPE_CHECKING:
    from tandem.workers.backends.embedded import EmbeddedSettings
    from tandem.workers.backends.onnx_embed import OnnxEmbedSettings

__all__ = ["BackendSettings", "make_backend"]


class BackendSettings(BaseModel):
    """Engine settings shared by every backend a run creates."""

    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    """How to reach Ollama."""
    embedded: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for :class:`~tandem.workers.backends.embedded.EmbeddedSettings`
    (validated only when an embedded model is used, so Ollama-only setups never import
    llama-cpp-python)."""

    def embedded_settings(self) -> EmbeddedSettings:
        """The embedded engine settings, defaults filled in."""
        from tandem.workers.backends.embedded import EmbeddedSettings

        return EmbeddedSettings(**self.embedded)

    def onnx_settings(self) -> OnnxEmbedSettings:
        """The ONNX embedding engine settings (``cache_dir`` and ``embed_threads`` of the
        ``[embedded]`` section)."""
        from tandem.workers.backends.onnx_embed import OnnxEmbedSettings

        threads = self.embedded.get("embed_threads")
        return OnnxEmbedSettings(
            cache_dir=self.embedded.get("cache_dir"), **({"threads": threads} if threads else {})
        )


def make_backend(
    ref: str, settings: BackendSettings | None = None, *, worker: str | None = None
) -> Backend:
    """Create the backend serving ``ref``.

    Args:
        ref: ``ollama:<model>`` or ``embedded:<name>``.
        settings: Engine settings (defaults when omitted).
        worker: Worker name for error messages.

    Raises:
        ValueError: If ``ref`` is not a valid model reference.
    """
    settings = settings or BackendSettings()
    engine, model = parse_model_ref(ref)
    if engine == "ollama":
        if any(h.serves(model) for h in settings.ollama.hosts):
            return OllamaPool(model, settings.ollama, worker=worker)
        return OllamaBackend(model, settings.ollama, worker=worker)
    asset = BUNDLED_MODELS.get(model)
    if asset is not None and asset.kind == "onnx":
        from tandem.workers.backends.onnx_embed import OnnxEmbedBackend

        return OnnxEmbedBackend(model, settings.onnx_settings())
    from tandem.workers.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(model, settings.embedded_settings())
