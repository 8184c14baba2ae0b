"""The Chroma embedding function every tandem store is created with.

Stores are always created with :class:`TandemEmbeddingFunction`, registered with
Chroma under the name ``tandem``. Its config (the model reference and Ollama
host) is saved with the collection, so a reopened store embeds with the same
model and Chroma never falls back to its default ONNX model (which it would try
to download).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from tandem.workers.backends import Backend, BackendSettings, OllamaSettings, make_backend

__all__ = ["TandemEmbeddingFunction", "run_sync"]

T = TypeVar("T")
_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    """One long-lived event loop in a daemon thread, shared by all synchronous callers.

    A single loop (rather than ``asyncio.run`` per call) keeps HTTP clients that
    libraries cache per loop valid for the life of the process.
    """
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="tandem-loop", daemon=True).start()
            _LOOP = loop
        return _LOOP


def run_sync(coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None) -> T:
    """Run a coroutine to completion from synchronous code, even inside a running loop.

    It runs on tandem's background event loop, inside ``context`` (default: a copy of
    the caller's) so context variables such as LangGraph's stream writer work.
    """
    loop = _background_loop()
    try:
        if asyncio.get_running_loop() is loop:
            raise RuntimeError("run_sync called from tandem's own background loop")
    except RuntimeError as exc:
        if "background loop" in str(exc):
            raise
    ctx = context or contextvars.copy_context()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def start() -> None:
        task = loop.create_task(coro, context=ctx)

        def finish(t: asyncio.Task[T]) -> None:
            if t.cancelled():
                done.cancel()
            elif (exc := t.exception()) is not None:
                done.set_exception(exc)
            else:
                done.set_result(t.result())

        task.add_done_callback(finish)

    loop.call_soon_threadsafe(start)
    return done.result()


@register_embedding_function
class TandemEmbeddingFunction(EmbeddingFunction[Documents]):
    """Embeds through a tandem backend (``ollama:<model>`` or ``embedded:<name>``).

    Args:
        model: The embedding model reference.
        ollama_host: The Ollama host, for ``ollama:`` models.
        backend: An already-built backend to reuse (not persisted).
    """

    def __init__(
        self, model: str, ollama_host: str | None = None, backend: Backend | None = None
    ) -> None:
        self.model = model
        self.ollama_host = ollama_host
        if backend is None:
            ollama = OllamaSettings(host=ollama_host) if ollama_host else OllamaSettings()
            backend = make_backend(model, BackendSettings(ollama=ollama))
        self.backend = backend

    def __call__(self, input: Documents) -> Embeddings:
        import numpy as np

        result = run_sync(self.backend.embed(list(input)))
        return [np.asarray(v, dtype=np.float32) for v in result.vectors]

    @staticmethod
    def name() -> str:
        return "tandem"

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine"]

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "ollama_host": self.ollama_host}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> TandemEmbeddingFunction:
        return TandemEmbeddingFunction(config["model"], config.get("ollama_host"))

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        if old_config.get("model") != new_config.get("model"):
            raise ValueError("a store's embedding model cannot change; re-create the store")
