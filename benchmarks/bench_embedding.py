"""(5b) Embeddings: the bundled MiniLM (int8 ONNX) against the old path, the 0.5B chat
model's mean-pooled hidden states (GGUF through llama.cpp), side by side in one run.

Both run in-process on one CPU thread (``[embedded] embed_threads = 1`` / ``n_threads =
1``). Measured: the first call of a fresh process (model verification and load
included), one short query, a batch of 32 short questions, and the router's profile
embedding at start-up (description + examples of the three demo workers, 33 texts, a
fresh ``Router`` with no cache). Medians over ``BENCH_EMBED_RUNS`` runs (default 20);
the old path's batch and profile rows use ``BENCH_EMBED_OLD_RUNS`` (default 5) because
one run takes tens of seconds.

Run alone: ``flock /tmp/tandem-cpu.lock .venv/bin/python benchmarks/bench_embedding.py``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import BenchResult, Figure, load_jsonl, median, pct

from tandem.agents.router import Router, RouterSettings
from tandem.workers.backends import Backend, BackendSettings, TokenMeasure, make_backend
from tandem.workers.builtin import specs as builtin_specs
from tandem.workers.chunking import chunk_text

NEW = "embedded:minilm"
OLD = "embedded:qwen2.5-coder-0.5b"
RUNS = int(os.environ.get("BENCH_EMBED_RUNS", "20"))
OLD_RUNS = int(os.environ.get("BENCH_EMBED_OLD_RUNS", "5"))


def _settings() -> BackendSettings:
    cache = os.environ.get("TANDEM_MODEL_CACHE")
    return BackendSettings(
        embedded={"cache_dir": Path(cache) if cache else None, "n_threads": 1, "embed_threads": 1}
    )


def _queries() -> list[str]:
    return [r["query"] for r in load_jsonl("routing.jsonl") if len(r["query"].split()) <= 14]


def _chunks() -> list[str]:
    """The demo corpora's chunks (as a MiniLM store cuts them: about 100–250 tokens each)."""
    backend = make_backend(NEW, _settings())
    assert isinstance(backend, TokenMeasure)
    return [
        chunk
        for spec in builtin_specs()
        for path in sorted(spec.knowledge[0].glob("*.md"))
        for chunk in chunk_text(
            path.read_text(encoding="utf-8"),
            max_tokens=backend.input_window(),
            count_tokens=backend.count_tokens,
        )
    ]


async def _times(fn: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


async def measure(ref: str, runs: int, heavy_runs: int) -> dict[str, Any]:
    """Cold first call, then warm query / batch / profile timings for one embedding model."""
    backend: Backend = make_backend(ref, _settings())
    queries = _queries()
    batch32 = queries[-32:]
    t0 = time.perf_counter()
    await backend.embed([queries[0]])
    cold = time.perf_counter() - t0
    for q in queries[1:3]:
        await backend.embed([q])  # warm-up
    it = iter(queries * (runs // len(queries) + 2))
    query = await _times(lambda: backend.embed([next(it)]), runs)
    batch = await _times(lambda: backend.embed(batch32), heavy_runs)
    specs = builtin_specs()
    profiles = await _times(lambda: Router(specs, backend, RouterSettings()).profiles(), heavy_runs)
    n_profile = sum(1 + len(s.examples) for s in specs)
    corpus: list[float] = []
    if ref == NEW:  # the old path needs minutes per pass: see the retrieval benchmark
        chunks = _chunks()
        corpus = await _times(lambda: backend.embed(chunks), heavy_runs)
    return {
        "corpus": corpus,
        "n_chunks": len(_chunks()) if ref == NEW else 0,
        "ref": ref,
        "cold": cold,
        "query": query,
        "batch": batch,
        "profiles": profiles,
        "n_profile": n_profile,
        "runs": (runs, heavy_runs),
    }


def _ms(x: float) -> str:
    return f"{x * 1000:.1f} ms" if x < 10 else f"{x:.1f} s"


def run() -> BenchResult:
    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        return await measure(NEW, RUNS, RUNS), await measure(OLD, RUNS, OLD_RUNS)

    new, old = asyncio.run(both())
    rows = []
    for m, label in (
        (new, "MiniLM-L6-v2 int8 ONNX (new default)"),
        (old, "0.5B GGUF mean-pooled (old)"),
    ):
        rows.append(
            [
                f"`{m['ref']}` — {label}",
                _ms(m["cold"]),
                _ms(median(m["query"])),
                _ms(pct(m["query"], 95)),
                f"{_ms(median(m['batch']))} ({median(m['batch']) / 32 * 1000:.1f} ms/text)",
                _ms(median(m["profiles"])),
                f"{m['runs'][0]} / {m['runs'][1]}",
            ]
        )
    q_new, p_new = median(new["query"]), median(new["profiles"])
    speed = {k: median(old[k]) / median(new[k]) for k in ("query", "batch", "profiles")}
    return BenchResult(
        key="embedding",
        title="5b. Embeddings: bundled MiniLM vs the chat model's mean-pooled embeddings",
        method=f"In-process, 1 CPU thread each. Query: one short routing question "
        "(`routing.jsonl`, a different one each run). Batch: 32 such questions in one call. "
        "Profiles: a fresh `Router.profiles()` (descriptions + examples of the 3 demo workers, "
        f"{new['n_profile']} texts, no cache), what start-up pays. Cold: the "
        "first call of the process, including model verification and load. Medians over the "
        "runs shown (query / batch+profiles).",
        headers=[
            "embedder",
            "cold first call",
            "query p50",
            "query p95",
            "batch of 32 p50",
            "profiles p50",
            "runs",
        ],
        rows=rows,
        figures=[
            Figure(
                "query embedding p50 (ms), MiniLM", q_new * 1000, "≤ 15", q_new <= 0.015, "{:.1f}"
            ),
            Figure(
                "profile embedding at start-up (s), MiniLM", p_new, "≤ 2", p_new <= 2.0, "{:.2f}"
            ),
            Figure(
                "query speed-up vs the 0.5B path (x)", speed["query"], "(reported)", None, "{:.0f}"
            ),
            Figure(
                "profile speed-up vs the 0.5B path (x)",
                speed["profiles"],
                "(reported)",
                None,
                "{:.0f}",
            ),
        ],
        notes=[
            f"Batch of 32: {speed['batch']:.0f}x faster with MiniLM. The old path's batch and "
            f"profile rows are medians of {old['runs'][1]} runs.",
            f"MiniLM embeds all {new['n_chunks']} chunks of the demo corpora (what ingesting the "
            f"three built-in stores costs) in {median(new['corpus']):.1f} s (median of "
            f"{len(new['corpus'])}).",
        ],
    )


if __name__ == "__main__":
    from _report import print_result

    print_result(run())
