"""(5) Retrieval: quality with the real embedders, Chroma query latency vs store size, and
ingestion throughput.

Quality: the three demo stores are filled from the built-in corpora by each embedder in
turn (the bundled MiniLM, and the old path: the 0.5B chat model mean-pooled), side by
side in one run, each with the chunking its store uses. A question counts when its gold
document is among the top 4 passages of the right worker's store (every worker's, for a
cross-domain question). Questions: ``demo_eval.jsonl`` (gold = the corpus file stating its
facts, pinned in :data:`DEMO_GOLD` where a fact occurs in several files) and the
answerable rows of ``calibration.jsonl`` (gold = their ``source``).
Run the quality part alone: ``python benchmarks/bench_retrieval.py --quality``.

Latency: a real tandem ``WorkerStore`` (persistent Chroma, tandem's registered embedding
function) filled with synthetic chunks through the fake Ollama's fixed hashed
bag-of-words embeddings (256 dimensions). Query latency is ``WorkerStore.search``
with a precomputed vector (top 4), so it measures Chroma, not the embedder.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from _common import EMBED_MODEL, BenchResult, Figure, load_jsonl, median, pct, scratch

from tandem.workers.backends import BackendSettings, OllamaSettings, make_backend
from tandem.workers.builtin import specs as builtin_specs
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


EMBEDDERS = ("embedded:minilm", "embedded:qwen2.5-coder-0.5b")
TOP = 4
DEMO_GOLD: dict[str, dict[str, str]] = {
    # demo_eval.jsonl question (start) → the gold file in each expected worker's corpus.
    # Pinned by hand because most facts ("14 days", "2 months", "4 g") occur in several
    # files; each pinned file is checked to contain one of the question's facts.
    "How long does Brightwater Lettings take to return a tenant's deposit after the final "
    "inspection? And": {
        "tenancy": "11-brightwater-lettings.md",
        "finance": "01-income-tax-bands.md",
    },
    "How long does Brightwater Lettings": {"tenancy": "11-brightwater-lettings.md"},
    "What interest rate does the Kestrel": {"finance": "09-kestrel-saver-plus.md"},
    "What is the maximum amount of paracetamol": {"health": "01-paracetamol.md"},
    "How much written notice must a landlord": {"tenancy": "03-notice-periods.md"},
    "What is the basic rate of income tax": {"finance": "01-income-tax-bands.md"},
    "How much does a 12-month Prescription": {"health": "10-prescription-charges.md"},
    "What is the most a tenant can deduct": {"tenancy": "05-when-repairs-are-not-done.md"},
    "By what date must a Velorian tax return": {"finance": "02-tax-returns-and-deadlines.md"},
    "How long after the last dose of metronidazole": {"health": "07-alcohol-and-medicines.md"},
    "On what date does the winter protection": {"tenancy": "09-winter-eviction-protection.md"},
    "Within how many days of a card payment": {"finance": "14-card-disputes.md"},
    "What is the phone number of the Velorian Health Line": {
        "health": "08-when-to-see-a-doctor.md"
    },
}


def _gold_sets() -> dict[str, list[tuple[str, dict[str, set[str]]]]]:
    """``{"demo_eval": [(question, {worker: gold files})…], "calibration": […],
    "cross_parts": […]}``."""
    corpora = {s.name: s.knowledge[0] for s in builtin_specs()}
    demo = []
    for row in load_jsonl("demo_eval.jsonl"):
        q = row["question"]
        gold = next(g for prefix, g in DEMO_GOLD.items() if q.startswith(prefix))
        assert set(gold) == set(row["expected_workers"]), q
        for worker, name in gold.items():
            text = (corpora[worker] / name).read_text(encoding="utf-8").lower()
            assert any(f.lower() in text for f in row["facts"]), (q, name)
        demo.append((q, {w: {name} for w, name in gold.items()}))
    calibration = [
        (r["question"], {r["expected_workers"][0]: {r["source"]}})
        for r in load_jsonl("calibration.jsonl")
        if r.get("answerable") and r.get("source")
    ]
    parts = []  # each part of a cross-domain question, as the dataset words it
    for row in load_jsonl("cross_domain.jsonl"):
        for part in row["parts"]:
            folder = corpora[part["worker"]]
            gold = {
                f.name
                for f in folder.iterdir()
                if any(x.lower() in f.read_text(encoding="utf-8").lower() for x in part["facts"])
            }
            if gold:
                parts.append((part["text"], {part["worker"]: gold}))
    return {"demo_eval": demo, "calibration": calibration, "cross_parts": parts}


def _weight() -> float:
    """The built-in specialists' keyword weight (``WorkerSpec.keyword_weight``)."""
    return builtin_specs()[0].keyword_weight


async def _evaluate(
    embedder: Any, stores: dict[str, tuple[Any, WorkerStore]], sets: dict[str, Any]
) -> dict[str, Any]:
    t0 = time.perf_counter()
    chunks = 0
    for spec, store in stores.values():
        report = await store.ingest(spec.knowledge)
        assert not report.errors, report.errors
        chunks += report.added
    result: dict[str, Any] = {"chunks": chunks, "ingest": time.perf_counter() - t0}
    for name, rows in sets.items():
        vectors = (await embedder.embed([q for q, _ in rows])).vectors
        for weight, key in ((0.0, name), (_weight(), f"{name}+kw")):
            ranks = []
            for (q, gold), vector in zip(rows, vectors, strict=True):
                worst = 0  # a cross-domain question needs every worker's gold document
                for worker, sources in gold.items():
                    docs = await stores[worker][1].search(
                        vector, TOP, query=q, keyword_weight=weight
                    )
                    found = [d.metadata["source"] for d in docs]
                    hit = [found.index(x) + 1 for x in sources if x in found]
                    worst = max(worst, min(hit) if hit else TOP + 1)
                ranks.append(worst)
            result[key] = ranks
    return result


def quality(refs: tuple[str, ...] = EMBEDDERS) -> dict[str, dict[str, Any]]:
    """Per embedder: chunks, ingestion seconds and the gold documents' ranks per question."""
    cache = os.environ.get("TANDEM_MODEL_CACHE")
    settings = BackendSettings(
        embedded={"cache_dir": Path(cache) if cache else None, "n_threads": 1, "embed_threads": 1}
    )
    sets = _gold_sets()
    out: dict[str, dict[str, Any]] = {}
    for ref in refs:
        client = open_client(scratch("tandem-bench-quality-") / "stores")
        embedder = make_backend(ref, settings)
        stores = {s.name: (s, WorkerStore(s.name, client, embedder)) for s in builtin_specs()}
        out[ref] = asyncio.run(_evaluate(embedder, stores, sets))
    return out


def _hits(ranks: list[int], k: int) -> str:
    n = sum(r <= k for r in ranks)
    return f"{n}/{len(ranks)} ({n / len(ranks):.0%})"


def quality_table(q: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "embedder · ranking",
        "chunks",
        "ingest",
        "demo_eval top-1",
        "demo_eval top-4",
        "calibration top-1",
        "calibration top-3",
        "parts top-1",
        "parts top-3",
    ]
    rows = []
    for ref, m in q.items():
        for suffix, label in (("", "embedding"), ("+kw", f"+ keywords {_weight():g}")):
            rows.append(
                [
                    f"`{ref}` · {label}",
                    str(m["chunks"]),
                    f"{m['ingest']:.1f} s",
                    _hits(m["demo_eval" + suffix], 1),
                    _hits(m["demo_eval" + suffix], 4),
                    _hits(m["calibration" + suffix], 1),
                    _hits(m["calibration" + suffix], 3),
                    _hits(m["cross_parts" + suffix], 1),
                    _hits(m["cross_parts" + suffix], 3),
                ]
            )
    return headers, rows


def run(sizes: tuple[int, ...] = (1000, 10000)) -> BenchResult:
    q = quality()
    q_headers, q_rows = quality_table(q)
    new, old = (q[r] for r in EMBEDDERS)

    def share(m: dict[str, Any], key: str, k: int) -> float:
        return sum(r <= k for r in m[key]) / len(m[key])

    demo4 = share(new, "demo_eval+kw", TOP)
    rows: list[list[str]] = []
    figures = [
        Figure("demo_eval gold in top 4, MiniLM + keywords", demo4, "≥ 0.95", demo4 >= 0.95),
        Figure(
            "calibration gold in top 4, MiniLM + keywords",
            share(new, "calibration+kw", TOP),
            "(reported)",
            None,
        ),
        Figure(
            "calibration gold first, MiniLM embedding only",
            share(new, "calibration", 1),
            "(reported)",
            None,
        ),
        Figure(
            "calibration gold first, MiniLM + keywords",
            share(new, "calibration+kw", 1),
            "(reported)",
            None,
        ),
        Figure(
            "cross-domain parts gold first, MiniLM embedding only",
            share(new, "cross_parts", 1),
            "(reported)",
            None,
        ),
        Figure(
            "cross-domain parts gold first, MiniLM + keywords",
            share(new, "cross_parts+kw", 1),
            "(reported)",
            None,
        ),
        Figure(
            "demo_eval gold in top 4, old 0.5B", share(old, "demo_eval", TOP), "(reported)", None
        ),
        Figure(
            "calibration gold in top 4, old 0.5B",
            share(old, "calibration", TOP),
            "(reported)",
            None,
        ),
    ]
    for size in sizes:
        rate, p50, p95, count = measure(size)
        rows.append([f"{count}", f"{rate:.0f}", f"{p50 * 1000:.2f} ms", f"{p95 * 1000:.2f} ms"])
        figures.append(
            Figure(f"query p95 at {count} chunks (ms)", p95 * 1000, "(reported)", None, "{:.2f}")
        )
    figures.append(Figure("ingestion (chunks/s, 10k store)", rate, "(reported)", None, "{:.0f}"))
    return BenchResult(
        key="retrieval",
        title="5. Retrieval: quality with the real embedders, Chroma latency and ingestion",
        method="Quality: the three demo stores filled from the built-in corpora by each "
        "embedder (1 CPU thread), each with its store's chunking (MiniLM: 254 word-piece "
        "tokens; the 0.5B: the 3 chars/token estimate); a question counts when its gold "
        "document is in the top k passages of the right worker's store (of every expected "
        "worker's, for cross-domain ones). `demo_eval.jsonl`: 13 questions, gold pinned in "
        "`bench_retrieval.DEMO_GOLD`; `calibration.jsonl`: the 148 answerable rows, gold = "
        "`source`; parts: each part of the `cross_domain.jsonl` questions as the dataset words "
        "it, gold = the files of its specialist's corpus stating one of its facts. Each embedder "
        "ranks twice: by the embedding alone, and as the product does (the embedding's nearest "
        f"passages re-ranked with keyword overlap, `keyword_weight = {_weight():g}`). "
        "Latency (table below it): synthetic chunks (~85 words each, "
        "3000-word vocabulary) ingested with `WorkerStore.ingest` (batches of 64) through the "
        "fake Ollama's hashed embeddings (256-d, over HTTP); "
        f"{QUERIES} `WorkerStore.search(vector, k=4)` queries per size.",
        headers=q_headers,
        rows=q_rows,
        figures=figures,
        extra_tables=[
            (
                "Chroma query latency and ingestion (fake embeddings)",
                ["chunks", "ingest chunks/s", "query p50", "query p95"],
                rows,
            )
        ],
    )


if __name__ == "__main__" and "--quality" in sys.argv:
    headers, table = quality_table(quality())
    print(" | ".join(headers))
    for row in table:
        print(" | ".join(row))
