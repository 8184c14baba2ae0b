"""(5) Retrieval: Chroma query latency vs store size, and ingestion throughput.

A real tandem ``WorkerStore`` (persistent Chroma, tandem's registered embedding
function) filled with synthetic chunks through the fake Ollama's fixed hashed
bag-of-words embeddings (256 dimensions). Query latency is ``WorkerStore.search``
with a precomputed vector (top 4), so it measures Chroma, not the embedder.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from _common import EMBED_MODEL, BenchResult, Figure, median, pct, scratch

from tandem.workers.backends import BackendSettings, OllamaSettings, make_backend
from tandem.workers.store import WorkerStore, open_client
from tandem.workers.testing import FakeOllama, hash_embed

VOCAB = [f"term{i}" for i in range(3000)]
QUERIES = 200


def _corpus(folder: Path, chunks: int, per_file: int = 100) -> None:
    rng = random.Random(7)
    for f in range(0, chunks, per_file):
        paras = [
            " ".join(rng.choice(VOCAB) for _ in range(85)) + "."
            for _ in range(min(per_file, chunks - f))
        ]
        (folder / f"doc{f // per_file:04d}.md").write_text("\n\n".join(paras))


def measure(size: int) -> tuple[float, float, float, int]:
    """(chunks/s ingested, query p50 s, query p95 s, chunks stored)."""
    root = scratch(f"tandem-bench-ret{size}-")
    (root / "docs").mkdir()
    _corpus(root / "docs", size)
    with FakeOllama(embed_models=(EMBED_MODEL,)) as fake:
        settings = BackendSettings(ollama=OllamaSettings(host=fake.url, timeout=60.0))
        embedder = make_backend(f"ollama:{EMBED_MODEL}", settings)
        store = WorkerStore("bench", open_client(root / "stores"), embedder, chunk_size=900)

        async def go() -> tuple[float, list[float], int]:
            t0 = time.perf_counter()
            report = await store.ingest([root / "docs"], batch=64)
            rate = report.added / (time.perf_counter() - t0)
            rng = random.Random(3)
            vecs = [hash_embed(" ".join(rng.choice(VOCAB) for _ in range(8))) for _ in range(20)]
            for v in vecs[:5]:
                await store.search(v, 4)  # warm-up
            lat = []
            for i in range(QUERIES):
                t = time.perf_counter()
                await store.search(vecs[i % len(vecs)], 4)
                lat.append(time.perf_counter() - t)
            return rate, lat, await store.count()

        rate, lat, count = asyncio.run(go())
    return rate, median(lat), pct(lat, 95), count


def run(sizes: tuple[int, ...] = (1000, 10000)) -> BenchResult:
    rows, figures = [], []
    for size in sizes:
        rate, p50, p95, count = measure(size)
        rows.append([f"{count}", f"{rate:.0f}", f"{p50 * 1000:.2f} ms", f"{p95 * 1000:.2f} ms"])
        figures.append(
            Figure(f"query p95 at {count} chunks (ms)", p95 * 1000, "(reported)", None, "{:.2f}")
        )
    figures.append(Figure("ingestion (chunks/s, 10k store)", rate, "(reported)", None, "{:.0f}"))
    return BenchResult(
        key="retrieval",
        title="5. Retrieval: Chroma query latency and ingestion",
        method=f"Synthetic chunks (~85 words each, 3000-word vocabulary) ingested with "
        f"`WorkerStore.ingest` (batches of 64) through the fake Ollama's hashed embeddings "
        f"(256-d, over HTTP); {QUERIES} `WorkerStore.search(vector, k=4)` queries per size.",
        headers=["chunks", "ingest chunks/s", "query p50", "query p95"],
        rows=rows,
        figures=figures,
    )
