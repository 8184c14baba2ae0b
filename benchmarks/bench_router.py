"""(4) Router: decision latency and accuracy with the embedded embeddings.

tandem's router (bundled 0.5B GGUF embeddings, in-process) against a keyword
baseline (content-word overlap with each worker's description and examples) and
an oracle (the labels). A decision is correct when its set of specialists equals
the labelled set: one worker for direct, several for a plan, none for
out-of-scope (the supervisor answers alone).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from _common import BenchResult, Figure, load_jsonl, median, pct

from tandem.agents.router import Router, RouterSettings
from tandem.workers._fakes.ollama_server import words
from tandem.workers.backends import BackendSettings, make_backend
from tandem.workers.builtin import specs as builtin_specs

LABELS = ["tenancy", "finance", "health", "cross", "none"]


def label(workers: list[str]) -> str:
    return workers[0] if len(workers) == 1 else "cross" if workers else "none"


def keyword_router(specs: list[Any]) -> Any:
    vocab = {s.name: set(words(" ".join([s.description, *s.examples]))) for s in specs}

    def decide(query: str) -> list[str]:
        q = set(words(query))
        scores = {n: len(q & v) for n, v in vocab.items()}
        top = max(scores.values())
        if top < 2:
            return []
        return sorted((n for n, s in scores.items() if s >= max(2, top - 1)), key=scores.get)

    return decide


def _cache_dir() -> Path | None:
    env = os.environ.get("TANDEM_MODEL_CACHE")
    return Path(env) if env else None


def run() -> BenchResult:
    rows = load_jsonl("routing.jsonl")
    specs = builtin_specs()
    embedder = make_backend(
        "embedded:qwen2.5-coder-0.5b", BackendSettings(embedded={"cache_dir": _cache_dir()})
    )
    router = Router(specs, embedder, RouterSettings())
    keyword = keyword_router(specs)

    async def decide_all() -> tuple[list[list[str]], list[float], float]:
        t0 = time.perf_counter()
        await router.profiles()  # load model + embed profiles once
        warm = time.perf_counter() - t0
        picks, lat = [], []
        for r in rows:
            t = time.perf_counter()
            decision, _ = await router.decide(r["query"])
            lat.append(time.perf_counter() - t)
            picks.append(sorted(decision.workers))
        return picks, lat, warm

    picks, lat, warm = asyncio.run(decide_all())
    kw_lat, kw_picks = [], []
    for r in rows:
        t = time.perf_counter()
        kw_picks.append(sorted(keyword(r["query"])))
        kw_lat.append(time.perf_counter() - t)

    def accuracy(preds: list[list[str]]) -> float:
        return sum(p == sorted(r["expected"]) for p, r in zip(preds, rows, strict=True)) / len(rows)

    acc, kw_acc = accuracy(picks), accuracy(kw_picks)
    matrix = {e: dict.fromkeys(LABELS, 0) for e in LABELS}
    for p, r in zip(picks, rows, strict=True):
        matrix[label(sorted(r["expected"]))][label(p)] += 1
    table = [
        [
            "tandem (embedded 0.5B)",
            f"{acc:.1%}",
            f"{median(lat) * 1000:.1f} ms",
            f"{pct(lat, 95) * 1000:.1f} ms",
        ],
        [
            "keyword overlap",
            f"{kw_acc:.1%}",
            f"{median(kw_lat) * 1e6:.0f} µs",
            f"{pct(kw_lat, 95) * 1e6:.0f} µs",
        ],
        ["oracle (labels)", "100.0%", "0", "0"],
    ]
    counts = {lab: sum(matrix[lab].values()) for lab in LABELS}
    return BenchResult(
        key="router",
        title="4. Router accuracy and decision latency",
        method=f"{len(rows)} labelled queries in `benchmarks/data/routing.jsonl` ("
        + ", ".join(f"{counts[lab]} {lab}" for lab in LABELS)
        + "), default router settings, bundled `qwen2.5-coder-0.5b` embeddings in-process. "
        f"Latency = `Router.decide` after profiles are embedded (one-off {warm:.1f} s incl. "
        "model load). Correct = the chosen set of specialists equals the label.",
        headers=["router", "accuracy", "p50", "p95"],
        rows=table,
        figures=[
            Figure("router accuracy (exact specialist set)", acc, "(vs keyword / oracle)", None),
            Figure("router decision p95 (ms)", pct(lat, 95) * 1000, "(reported)", None, "{:.1f}"),
        ],
        extra_tables=[
            (
                "Confusion matrix (rows: label, columns: tandem's decision)",
                ["label", *LABELS],
                [[e, *(str(matrix[e][p]) for p in LABELS)] for e in LABELS],
            )
        ],
        notes=[
            f"keyword baseline accuracy {kw_acc:.1%}; tandem − keyword = {acc - kw_acc:+.1%}",
            "tandem's decision latency is one call of the bundled 0.5B embedding model "
            "(query + its parts) on the shared CPU; the scoring after it is a few dot products "
            "over three centroids. With Ollama embeddings on a GPU it is milliseconds.",
            "The thresholds were tuned on this same set, so accuracy is optimistic.",
        ],
    )
