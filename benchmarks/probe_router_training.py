"""Probe: does more written training data lift the learned router?

Not part of ``run.py``. Cross-validates the default learned router on
``data/routing_eval.jsonl`` exactly as ``make bench BENCH=router`` does (5 folds, the
bundled training routes, thresholds tuned per fold on its training folds), once per fold
assignment, with the rows of ``data/routing_train_extra.jsonl`` added to every fold's
training routes (as written routes: always trained on, never held out). Rows within
MiniLM cosine 0.78 of an evaluated question are dropped first, the rule the bundled
training routes follow.

``data/routing_train_extra.jsonl``: 120 questions written for this probe from the
workers' descriptions and corpora alone, without reading the evaluation set or any
router result: 66 cross-domain (20 finance+tenancy, 20 health+tenancy, 18
finance+health, 8 all three), 30 single-domain (10 per worker), 24 out of scope.

Arms (``all`` is the one set out in advance; ``cross`` and ``inscope`` were run after
seeing it): ``base`` (no extra rows), ``all``, ``cross`` (the cross-domain rows only),
``inscope`` (every row with a specialist). Run under the CPU lock, e.g.
``OMP_NUM_THREADS=1 flock /tmp/tandem-cpu.lock python benchmarks/probe_router_training.py
all 0,1,2,3,4``.

Measured 2026-12-03 (seeds 0–4, mean exact / cross-domain recall / out-of-scope
precision): base 92.9 / 87.9 / 95.1; all (103 rows kept) 92.3 / 89.3 / 93.1; cross (60)
92.9 / 88.8 / 94.7; inscope (79) 92.7 / 88.8 / 94.2. Within a fold assignment's spread
(91.8–94.3 % exact for base): more written routes of this kind do not move the router.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TANDEM_PLUGINS", "")

from _common import DATA, repeated_cv

from tandem.agents.router._data import LabelledRoute, load_routes
from tandem.graphs.runtime import builtin_routes
from tandem.workers.backends import make_backend
from tandem.workers.builtin import specs as builtin_specs

EXTRA = DATA / "routing_train_extra.jsonl"
MAX_COSINE = 0.78
ARMS = ("base", "all", "cross", "inscope")


def _arm(rows: list[LabelledRoute], arm: str) -> list[LabelledRoute]:
    if arm == "cross":
        return [r for r in rows if len(r.workers) >= 2]
    if arm == "inscope":
        return [r for r in rows if r.workers]
    return rows if arm == "all" else []


async def main(arm: str, seeds: list[int]) -> None:
    specs = builtin_specs()
    embedder = make_backend("embedded:minilm")
    data = load_routes(DATA / "routing_eval.jsonl")
    routes = builtin_routes(specs)
    extra = _arm(load_routes(EXTRA, written=True), arm)
    if extra:
        evaluated = np.asarray((await embedder.embed([r.question for r in data])).vectors)
        written = np.asarray((await embedder.embed([r.question for r in extra])).vectors)
        nearest = (written @ evaluated.T).max(axis=1)
        extra = [r for r, c in zip(extra, nearest, strict=True) if c < MAX_COSINE]
        print(f"{arm}: {len(extra)} extra rows below cosine {MAX_COSINE}", flush=True)
    await repeated_cv(arm, embedder, [*extra, *routes], seeds)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ARMS:
        sys.exit(__doc__)
    seeds = [int(s) for s in (sys.argv[2] if len(sys.argv) > 2 else "0,1,2,3,4").split(",")]
    asyncio.run(main(sys.argv[1], seeds))
