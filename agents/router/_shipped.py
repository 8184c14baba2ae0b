"""The default router's fit, shipped: a zero-config first start loads it instead of fitting.

With the built-in workers, the bundled embedder and the default ``[router]`` settings, the
learned router's training data — the workers' profiles, their labelled routes, the
off-topic questions — are the same on every machine, and so is its fit. That fit ships as
``default-router.npz``, stored with the key it was fitted under: the hash of the training
texts and their labels, the embedding model and every setting that shapes the fit
(:meth:`~._learned.LearnedRouter.fit` computes it). A start whose key matches loads the
shipped model in milliseconds; any other training data — an edited example, a ``train``
file, approved routing feedback, another worker, another embedder or threshold — has
another key and is fitted (then cached) as before.

Regenerate it after editing the bundled training texts or the fitting code (a fast test
says when it is stale)::

    python -m tandem.agents.router._regenerate

(which writes the bundled vectors, then this fit from them).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from tandem.agents.router._model import RouterModel

__all__ = ["SHIPPED_FILE", "shipped_model", "shipped_path"]

SHIPPED_FILE = "default-router.npz"


def shipped_path() -> Path:
    """Where the shipped fit lives (inside the package)."""
    return Path(str(resources.files("tandem.agents.router"))) / SHIPPED_FILE


def shipped_model(key: str, path: Path | None = None) -> tuple[RouterModel, dict[str, Any]] | None:
    """The shipped model and its metadata when it was fitted under ``key``; else ``None``
    (also when the file is missing or unreadable)."""
    try:
        model, meta = RouterModel.load(path or shipped_path())
    except (OSError, ValueError, KeyError):
        return None
    if meta.get("key") != key:
        return None
    return model, {k: v for k, v in meta.items() if k != "key"}
