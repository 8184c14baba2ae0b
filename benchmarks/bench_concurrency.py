"""(6) Concurrency: completed runs/s at 1, 4, 16 and 32 concurrent runs.

One graph (one runtime) serves every run; each run is a direct single-domain
question whose worker call waits a fixed ``L`` at the fake Ollama (parallel
requests allowed; the fakes run in a separate process). Memory is this
process's RSS before and after.
"""

from __future__ import annotations

import asyncio
import time

import psutil
from _common import BenchResult, Figure, allow_parallel, fake_config, seeded_data_dir
from _fakehost import remote_fakes

from tandem.graphs import build_graph

QUERY = "How long does Brightwater Lettings take to return a tenant's deposit?"


def run(latency: float = 0.05, levels: tuple[int, ...] = (1, 4, 16, 32)) -> BenchResult:
    proc = psutil.Process()
    rows, rates = [], {}
    cpu_per_run: list[float] = []
    with remote_fakes(latency, 0.0) as (ollama, openai):
        graph = build_graph(fake_config(ollama, openai, seeded_data_dir(), **allow_parallel({})))

        async def level(c: int) -> tuple[float, int]:
            total = max(32, 2 * c)
            sem = asyncio.Semaphore(c)
            failed = 0

            async def one() -> None:
                nonlocal failed
                async with sem:
                    ans = (await graph.ainvoke({"query": QUERY}))["answer"]
                    failed += any(r.status != "ok" for r in ans.worker_results)

            t0, c0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*(one() for _ in range(total)))
            cpu_per_run.append((time.process_time() - c0) / total)
            return total / (time.perf_counter() - t0), failed

        async def all_levels() -> None:
            await graph.ainvoke({"query": QUERY})  # warm-up
            for c in levels:
                before = proc.memory_info().rss
                rate, failed = await level(c)
                after = proc.memory_info().rss
                rates[c] = rate
                rows.append(
                    [
                        str(c),
                        f"{rate:.1f}",
                        f"{rate / rates[levels[0]]:.2f}×",
                        f"{cpu_per_run[-1] * 1000:.0f} ms",
                        f"{before / 2**20:.0f} → {after / 2**20:.0f} MiB",
                        str(failed),
                    ]
                )

        asyncio.run(all_levels())
    return BenchResult(
        key="concurrency",
        title="6. Concurrency: runs/s",
        method=f"`graph.ainvoke` direct runs (route + retrieval + one worker call with "
        f"L = {latency * 1000:.0f} ms), max(32, 2c) runs per level, c at a time "
        "(asyncio semaphore), one shared graph.",
        headers=["concurrency", "runs/s", "vs c=1", "CPU/run", "RSS before → after", "failed"],
        rows=rows,
        notes=[
            "CPU/run = this process's CPU seconds per completed run; with 2 shared cores the "
            "ceiling is roughly (free cores) / (CPU per run), whatever the concurrency."
        ],
        figures=[
            Figure(f"runs/s at c = {c}", rates[c], "(reported)", None, "{:.1f}") for c in levels
        ],
    )
