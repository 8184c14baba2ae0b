"""(2) Orchestration overhead and (3) parallel fan-out, with fixed-latency fake models.

Every chat call to a fake (worker or supervisor) waits exactly ``L``; embeddings
and Chroma are real work but instant fakes. Overhead = tandem's wall time / the
ideal: one worker call (``L``) for a direct answer; plan + the slowest of the
parallel workers + synthesis (``3 L``) for a planned one. Fan-out runs a plan of
``k`` subtasks on ``k`` workers with an instant supervisor: ideal = ``L``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from _common import (
    BenchResult,
    Figure,
    allow_parallel,
    fake_config,
    fakes,
    median,
    parallel_setting,
    seeded_data_dir,
)
from _fakehost import remote_fakes

from tandem.graphs import build_graph
from tandem.workers import WorkerSpec

DIRECT_Q = "How long does Brightwater Lettings take to return a tenant's deposit?"
PLANNED_Q = (
    "Can my landlord raise the rent by 8% this year? And how much of my rent can I "
    "claim back through the Renters' Tax Credit?"
)
RUNS = 8
CONFIDENT = json.dumps(
    {"answer": "Done.", "confidence": 0.9, "citations": [], "needs_escalation": False}
)


async def _walls(graph: Any, query: str, runs: int) -> tuple[list[float], list[float], Any]:
    """Wall times and tandem's own CPU seconds (this process; the fakes run elsewhere)."""
    await graph.ainvoke({"query": query})  # warm-up: profiles, clients, collections
    walls, cpus, last = [], [], None
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        last = await graph.ainvoke({"query": query})
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return walls, cpus, last["answer"] if last else None


def overhead(latency: float) -> tuple[list[list[str]], list[float]]:
    rows, ratios = [], []
    with remote_fakes(latency, latency) as (ollama, openai):
        graph = build_graph(fake_config(ollama, openai, seeded_data_dir(), **allow_parallel({})))
        for kind, query in (("direct", DIRECT_Q), ("planned", PLANNED_Q)):
            walls, cpus, answer = asyncio.run(_walls(graph, query, RUNS))
            t = answer.ledger.totals
            workers = len(answer.worker_results)
            shape = f"{t.supervisor_calls} sup + {t.worker_calls} worker calls ({workers} parallel)"
            ideal = latency * (1 if kind == "direct" else 3)
            expected = (0, 1) if kind == "direct" else (2, workers)
            if (t.supervisor_calls, t.worker_calls) != expected or answer.route.kind != (
                "direct" if kind == "direct" else "plan"
            ):
                shape += " — NOT the ideal shape"
            ratio = median(walls) / ideal
            ratios.append(ratio)
            rows.append(
                [
                    f"{latency * 1000:.0f} ms",
                    kind,
                    shape,
                    f"{ideal * 1000:.0f} ms",
                    f"{median(walls) * 1000:.1f} ms",
                    f"{(median(walls) - ideal) * 1000:.1f} ms",
                    f"{median(cpus) * 1000:.1f} ms",
                    f"{ratio:.3f}",
                ]
            )
    return rows, ratios


def _fanout_specs(k: int) -> list[WorkerSpec]:
    return [
        WorkerSpec(
            name=f"w{i}",
            description=f"Specialist number {i} for alpha bravo questions topic{i}.",
            model="ollama:qwen2.5:1.5b",
        )
        for i in range(1, k + 1)
    ]


def fanout(latency: float, ks: tuple[int, ...] = (1, 2, 4, 8)) -> dict[int, tuple[float, float]]:
    """``k`` → (worker-phase span / L, whole-run wall / L), medians over the runs."""
    out: dict[int, tuple[float, float]] = {}
    for k in ks:
        with fakes(chat_latency=latency) as (ollama, openai):
            plan = {
                "subtasks": [
                    {"worker": f"w{i}", "instruction": f"alpha bravo part {i}?"}
                    for i in range(1, k + 1)
                ],
                "rationale": "fan-out benchmark",
            }
            over = allow_parallel(
                {
                    "router": {"min_score": -1.0, "plan_margin": 2.0, "max_workers": 1},
                    "max_subtasks": 8,
                    "builtin_workers": False,
                }
            )
            config = fake_config(
                ollama, openai, seeded_data_dir(), **{**over, "workers": _fanout_specs(k)}
            )
            ollama.respond_with("qwen2.5:1.5b", lambda body: CONFIDENT)
            graph = build_graph(config)

            async def runs(
                graph: Any = graph, plan: dict[str, Any] = plan, k: int = k
            ) -> tuple[float, float]:
                walls, spans = [], []
                for _ in range(RUNS + 1):
                    if k > 1:  # one worker routes direct; k workers tie, so the route plans
                        openai.script(json.dumps(plan))  # synthesis: the fake's rule model
                    ollama.reset()
                    t0 = time.perf_counter()
                    answer = (await graph.ainvoke({"query": "alpha bravo question?"}))["answer"]
                    walls.append(time.perf_counter() - t0)
                    chats = ollama.requests_to("/api/chat")
                    spans.append(max(r.ended for r in chats) - min(r.started for r in chats))
                    assert len(answer.worker_results) == k == len(chats), answer.notes
                return median(spans[1:]), median(walls[1:])

            span, wall = asyncio.run(runs())
            out[k] = (span / latency, wall / latency)
    return out


def run(latency: float = 0.05) -> BenchResult:
    rows, ratios = overhead(latency)
    rows2, ratios2 = overhead(latency * 4)
    fan = fanout(latency)
    worst = max(ratios)
    figures = [
        Figure(f"direct wall / ideal (L = {latency * 1000:.0f} ms)", ratios[0], "≤ 1.05", None),
        Figure(f"planned wall / ideal (L = {latency * 1000:.0f} ms)", ratios[1], "≤ 1.05", None),
        Figure("fan-out k = 4: worker-phase wall / L", fan[4][0], "≤ 1.2", fan[4][0] <= 1.2),
    ]
    figures[0].passed = ratios[0] <= 1.05
    figures[1].passed = ratios[1] <= 1.05
    return BenchResult(
        key="overhead",
        title="2–3. Orchestration overhead and parallel fan-out",
        method="Fake models with a fixed chat latency L (embeddings instant), served from a "
        f"separate process for (2); median of {RUNS} "
        "runs after a warm-up, `graph.ainvoke`. Ideal: direct = L (one worker call); planned "
        "= plan + max(parallel workers) + synthesis = 3 L. Fan-out: a scripted plan of k "
        "subtasks on k workers, supervisor instant, ideal = L; the worker phase is timed at the "
        "fake server (first worker request in → last answer out), the whole run adds routing, "
        "plan and synthesis through litellm (latency 0). Concurrency limit: "
        + parallel_setting()
        + ".",
        headers=[
            "L",
            "route",
            "shape",
            "ideal",
            "wall (median)",
            "wall − ideal",
            "tandem CPU",
            "wall / ideal",
        ],
        rows=rows + rows2,
        figures=figures,
        extra_tables=[
            (
                f"Fan-out (L = {latency * 1000:.0f} ms)",
                ["k", "worker phase / L", "whole run / L"],
                [[str(k), f"{a:.3f}", f"{b:.3f}"] for k, (a, b) in fan.items()],
            )
        ],
        notes=[
            f"worst wall/ideal over both latencies: {max(worst, *ratios2):.3f}",
            "tandem CPU = CPU seconds this process used per run (routing embed call, Presidio "
            "guard, Chroma query, LangGraph, HTTP clients, litellm); on a loaded machine each "
            "CPU millisecond costs several wall milliseconds, so wall − ideal grows with load.",
        ],
    )
