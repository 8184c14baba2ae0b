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

if TYPE_CHECKING:
    from tandem.workers.backends.embedded import EmbeddedSettings
    from tandem.workers.backends.onnx_embed import OnnxEmbedSettings

__all__ = ["BackendSettings", "make_backend", "parse_model_ref"]

_ENGINES = ("ollama", "embedded")


def parse_model_ref(ref: str) -> tuple[str, str]:
    """Split a worker/embedding model reference into ``(engine, model)``.

    Args:
        ref: ``ollama:<model>`` (e.g. ``ollama:qwen2.5:1.5b``) or ``embedded:<name>``.

    Returns:
        The engine name and the engine's own model name.

    Raises:
        ValueError: If the engine is unknown or the model part is empty.
    """
    engine, sep, model = ref.partition(":")
    if not sep or engine not in _ENGINES or not model.strip():
        raise ValueError(
            f"'{ref}' is not a model reference; expected 'ollama:<model>' "
            "(e.g. 'ollama:qwen2.5:1.5b') or 'embedded:<name>' (e.g. 'embedded:qwen2.5-coder-0.5b')"
        )
    return engine, model.strip()


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
