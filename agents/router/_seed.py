"""Bundled embeddings of the router's bundled training texts, for the bundled embedder.

The learned router's first start embeds every training text: with the built-in workers,
about 480 (their profiles, their labelled routes and the off-topic questions) — ~2.5 s of
MiniLM on the 2-core reference machine. Those texts ship with tandem, and so does the
embedding model, so their ``embedded:minilm`` vectors ship too (``minilm-vectors.npz``,
float16): a first start then embeds only what the bundle lacks (your workers' examples,
your ``train`` rows). A text whose vector is not in the bundle is embedded as before; the
bundle is ignored for every other embedding model.

Regenerate the file after editing ``offtopic.txt``, the built-in workers' examples or
their ``routing.jsonl`` (a fast test says so); the command then writes the default
router's shipped fit from these vectors too (:mod:`._shipped`)::

    python -m tandem.agents.router._regenerate
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from tandem.agents.router._data import LabelledRoute, build_training_set, load_routes
from tandem.agents.router._linear import Array
from tandem.workers.builtin import routing_path, training_path
from tandem.workers.builtin import specs as builtin_specs

__all__ = ["SEED_MODEL", "bundled_routes", "seed_path", "seed_texts", "seed_vectors", "text_key"]

SEED_MODEL = "embedded:minilm"
"""The embedding model the bundled vectors come from."""
SEED_FILE = "minilm-vectors.npz"


def text_key(text: str) -> str:
    """The key of a training text's vector (in the bundle and the on-disk cache)."""
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def seed_path() -> Path:
    return Path(str(resources.files("tandem.agents.router"))) / SEED_FILE


def seed_vectors(embed_model: str) -> dict[str, Array]:
    """The bundled vectors by :func:`text_key` (empty for another embedding model or when
    the file is missing or unreadable)."""
    if embed_model != SEED_MODEL:
        return {}
    try:
        with np.load(seed_path(), allow_pickle=False) as data:
            keys, vecs = data["keys"], data["vectors"]
    except (OSError, ValueError, KeyError):
        return {}
    return {str(k): np.asarray(v, dtype=np.float64) for k, v in zip(keys, vecs, strict=True)}


def bundled_routes() -> list[LabelledRoute]:
    """The built-in workers' labelled routes, as a zero-config start trains on them: the
    routes written for training, then the labelled set."""
    return [*load_routes(training_path(), written=True), *load_routes(routing_path())]


def seed_texts() -> list[str]:
    """The bundled training texts: the built-in workers' profiles and labelled routes, and
    the off-topic questions (what :func:`~._data.build_training_set` draws from them)."""
    return build_training_set(builtin_specs(), bundled_routes()).texts


def write(texts: Sequence[str], vectors: Array, path: Path) -> None:
    """Store unit-length ``vectors`` of ``texts`` as float16."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    np.savez_compressed(
        path, keys=np.array([text_key(t) for t in texts]), vectors=unit.astype(np.float16)
    )
