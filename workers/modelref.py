"""Model references: ``ollama:<model>`` or ``embedded:<name>``.

Below both :mod:`tandem.workers.spec` and :mod:`tandem.workers.backends` (which import it),
so the worker spec can look up bundled models without an import cycle.
"""

from __future__ import annotations

__all__ = ["parse_model_ref"]

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
