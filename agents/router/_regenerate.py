"""Regenerate the router's bundled artefacts (a maintenance command)::

    python -m tandem.agents.router._regenerate

1. ``minilm-vectors.npz`` (:mod:`._seed`): the bundled MiniLM embeddings of the bundled
   training texts — run after editing ``offtopic.txt``, the built-in workers' examples,
   ``routing.jsonl`` or ``routing_train.jsonl``;
2. ``default-router.npz`` (:mod:`._shipped`): the zero-config router fitted from those
   vectors — also after changing how the router fits (features, penalties, thresholds).

Fast tests say when either is stale.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tandem.agents.router._learned import LearnedRouter
from tandem.agents.router._seed import SEED_MODEL, bundled_routes, seed_path, seed_texts, write
from tandem.agents.router._shipped import shipped_path
from tandem.agents.router.settings import RouterSettings
from tandem.workers.backends import BackendSettings, make_backend
from tandem.workers.builtin import specs as builtin_specs

__all__ = ["write_shipped"]


async def write_shipped(path: Path | None = None) -> Path:
    """Fit the zero-config router (the built-in workers and their labelled routes, the
    bundled vectors, default settings) and store its model with its key at ``path``."""
    path = path or shipped_path()
    with tempfile.TemporaryDirectory(prefix="tandem-router-") as tmp:
        router = LearnedRouter(
            builtin_specs(),
            make_backend(SEED_MODEL, BackendSettings()),
            RouterSettings(),
            routes=bundled_routes(),
            cache_dir=Path(tmp),
            use_shipped=False,
        )
        await router.fit()
        assert router.fit_info.path is not None and not router.fit_info.shipped
        shutil.copyfile(router.fit_info.path, path)
    return path


async def _main() -> None:  # pragma: no cover - a maintenance command
    texts = seed_texts()
    res = await make_backend(SEED_MODEL, BackendSettings()).embed(texts)
    write(texts, np.asarray(res.vectors, dtype=np.float64), seed_path())
    print(f"wrote {len(texts)} vectors to {seed_path()}")
    print(f"wrote the default router's fit to {await write_shipped()}")


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(_main())
