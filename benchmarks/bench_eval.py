"""(11) Real-model evaluation: ``tandem.graphs.evaluate`` on the embedded models.

Zero-config tandem (bundled 1.5B supervisor and 0.5B specialists, in-process,
no network) on ``benchmarks/data/demo_eval.jsonl`` — the same library the
``tandem eval`` command uses. On a 2-core CPU a direct answer takes tens of
seconds and a planned one minutes, so ``BENCH_EVAL_LIMIT`` chooses the subset:
the first N questions (default 3: one per specialist; the 4th is cross-domain),
``all`` for every question, ``0`` to skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

from _common import DATA, BenchResult, Figure, scratch

from tandem.graphs import TandemConfig, build_graph
from tandem.graphs.evaluate import evaluate, load_dataset
from tandem.workers.builtin import specs as builtin_specs

DEFAULT_LIMIT = 3


def _limit(total: int) -> int:
    raw = os.environ.get("BENCH_EVAL_LIMIT", str(DEFAULT_LIMIT)).strip().lower()
    return total if raw == "all" else max(0, min(total, int(raw)))


def _data_dir() -> Path:
    """A scratch data dir; reuses already-ingested default stores when there are any."""
    target = scratch("tandem-bench-eval-")
    existing = TandemConfig(workers=builtin_specs(), builtin_workers=False).data_dir / "stores"
    if (existing / "chroma.sqlite3").exists():
        shutil.copytree(existing, target / "stores")
        if (existing.parent / "cache").is_dir():  # router profile vectors (same embedder)
            shutil.copytree(existing.parent / "cache", target / "cache")
    return target


def run() -> BenchResult:
    cases = load_dataset(DATA / "demo_eval.jsonl")
    limit = _limit(len(cases))
    title = "11. Real-model evaluation (embedded models)"
    if limit == 0:
        return BenchResult("eval", title, "skipped (BENCH_EVAL_LIMIT=0)", ["-"], [])
    config = TandemConfig(
        workers=builtin_specs(), builtin_workers=False, data_dir=_data_dir(), checkpointer="memory"
    )
    graph = build_graph(config)

    async def go() -> Any:
        await graph.runtime.ensure_ingested()  # not timed: a one-off per machine
        return await evaluate(
            graph,
            cases,
            limit=limit,
            on_row=lambda i, r: print(
                f"  [{i + 1}/{limit}] {r.seconds:.0f} s {r.route}", flush=True
            ),
        )

    report = asyncio.run(go())
    rows = [
        [
            r.question[:60] + ("…" if len(r.question) > 60 else ""),
            ",".join(r.expected_workers),
            f"{r.route}{' ↑' if r.escalated else ''}: {','.join(r.workers) or '—'}",
            "✓" if r.route_ok else "✗",
            f"{len(r.facts_found)}/{len(r.facts_found) + len(r.facts_missing)}",
            f"{r.local_share:.0%}",
            f"{r.seconds:.1f} s",
        ]
        for r in report.rows
    ]
    rep = report
    sup = config.supervisor.model
    return BenchResult(
        key="eval",
        title=title,
        method=f"`tandem.graphs.evaluate` (what `tandem eval` runs) on the first {limit} of "
        f"{len(cases)} questions in `benchmarks/data/demo_eval.jsonl` (`BENCH_EVAL_LIMIT="
        f"{os.environ.get('BENCH_EVAL_LIMIT', DEFAULT_LIMIT)}`), zero-config models: "
        f"supervisor `{sup}`, specialists `{builtin_specs()[0].model}`, embeddings "
        f"`{config.router.embed_model}`, all in-process on the CPU. ↑ = escalated.",
        headers=["question", "expected", "route", "route ok", "facts", "local", "latency"],
        rows=rows,
        figures=[
            Figure("eval route accuracy", rep.route_accuracy, "(reported)", None, "{:.0%}"),
            Figure("eval fact recall", rep.fact_recall, "(reported)", None, "{:.0%}"),
            Figure("eval local share (mean)", rep.local_share, "(reported)", None, "{:.0%}"),
            Figure("eval latency p50 (s)", rep.p50_seconds, "(reported)", None, "{:.1f}"),
            Figure("eval latency p95 (s)", rep.p95_seconds, "(reported)", None, "{:.1f}"),
            Figure("eval cost (USD)", rep.cost_usd, "(reported)", None, "{:.4f}"),
        ],
    )
