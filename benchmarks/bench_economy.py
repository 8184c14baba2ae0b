"""(1) Large-model economy: tandem vs the standard supervisor pattern, same workload.

Both systems talk to the same fake OpenAI server (the "large model") in one
process; every figure comes from the ``usage`` objects that server returned and
the request bodies it received. tandem's specialists run on the fake Ollama
(small models, local); the baseline's worker agents run on the large model, as
in LangGraph's supervisor tutorial.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from _baseline import build_baseline, scripted_responder
from _common import (
    BenchResult,
    Figure,
    fake_config,
    fakes,
    load_jsonl,
    scratch,
)

from tandem.graphs import TandemConfig, build_graph
from tandem.workers.testing import FakeOpenAI, rule_supervisor

EMBEDDER = "embedded:minilm"


def embedded_data_dir() -> Path:
    """Scratch data dir; copies already-ingested default stores (same embedder) if present."""
    target = scratch("tandem-bench-econ-")
    existing = TandemConfig().data_dir / "stores"
    if (existing / "chroma.sqlite3").exists():
        shutil.copytree(existing, target / "stores")
        if (existing.parent / "cache").is_dir():  # router profile vectors (same embedder)
            shutil.copytree(existing.parent / "cache", target / "cache")
    return target


def workload() -> list[dict[str, Any]]:
    """36 single-domain + 12 cross-domain questions (75 % / 25 %) from routing.jsonl."""
    rows = load_jsonl("routing.jsonl")
    single: list[dict[str, Any]] = []
    for domain in ("tenancy", "finance", "health"):
        single += [r for r in rows if r["expected"] == [domain]][:12]
    cross = [r for r in rows if len(r["expected"]) >= 2][:12]
    return single + cross


def _tally(fake: FakeOpenAI, start: int) -> tuple[int, int, int]:
    usages = fake.usages[start:]
    bodies = fake.completions()
    sent = sum(len(json.dumps(b).encode()) for b in bodies)
    return len(usages), sum(u["total_tokens"] for u in usages), sent


def run() -> BenchResult:
    queries = workload()
    gold = {q["query"]: q["expected"] for q in queries}
    per: dict[str, dict[str, float]] = {}
    covered: dict[str, float] = {}
    planned: dict[str, dict[str, float]] = {}
    data_dir = embedded_data_dir()
    with fakes() as (ollama, openai):
        rules = scripted_responder(gold)

        def respond(body: dict[str, Any]) -> str | dict[str, Any]:
            # One server, two clients: tool-calling requests are the baseline's.
            return rules(body) if body.get("tools") else rule_supervisor(body)

        openai.responder = respond
        graph = None
        # Routing and retrieval use the real bundled embeddings (the fake's hashed bag of
        # words cannot route paraphrased questions); only the chat models are fakes. The
        # same workload runs with the supervisor planning every cross-domain question (the
        # path before router-built plans) and with [planner] mode = "auto".
        for mode in ("supervisor", "auto"):
            config = fake_config(
                ollama,
                openai,
                data_dir,
                router={"embed_model": EMBEDDER, "min_score": 0.125, "part_min_score": 0.1},
                planner={"mode": mode},
            )
            graph = build_graph(config)
            asyncio.run(graph.runtime.ensure_ingested())  # a one-off, not counted
            name = f"tandem ({'supervisor plans' if mode == 'supervisor' else 'router plans'})"

            async def tandem_all(graph: Any = graph, name: str = name) -> float:
                hit = 0.0
                stats = planned.setdefault(name, {"n": 0, "calls": 0, "tokens": 0, "router": 0})
                for i, q in enumerate(queries, 1):
                    print(f"  {name} {i}/{len(queries)}", end="\r", flush=True)
                    before = len(openai.usages)
                    state = await graph.ainvoke({"query": q["query"]})
                    answer = state["answer"]
                    ok = {r.worker for r in answer.worker_results if r.status == "ok"}
                    hit += len(ok & set(q["expected"])) / len(q["expected"])
                    if answer.ledger.planned_by is not None:
                        usages = openai.usages[before:]
                        stats["n"] += 1
                        stats["calls"] += len(usages)
                        stats["tokens"] += sum(u["total_tokens"] for u in usages)
                        stats["router"] += answer.ledger.planned_by == "router"
                return hit

            openai.reset()
            start = len(openai.usages)
            covered[name] = asyncio.run(tandem_all()) / len(queries)
            calls, tokens, sent = _tally(openai, start)
            per[name] = {"calls": calls, "tokens": tokens, "bytes": sent}

        assert graph is not None
        baseline = build_baseline(graph.runtime, openai.api_base)
        openai.reset()
        start = len(openai.usages)
        hit = 0.0
        for i, q in enumerate(queries, 1):
            print(f"  baseline {i}/{len(queries)}", end="\r", flush=True)
            state = baseline.invoke({"messages": [{"role": "user", "content": q["query"]}]})
            names = {getattr(m, "name", None) for m in state["messages"]}
            hit += len({f"{d}_expert" for d in q["expected"]} & names) / len(q["expected"])
        covered["baseline"] = hit / len(queries)
        calls, tokens, sent = _tally(openai, start)
        per["baseline"] = {"calls": calls, "tokens": tokens, "bytes": sent}

    n = len(queries)
    new, old = "tandem (router plans)", "tandem (supervisor plans)"
    ratio = per[new]["tokens"] / per["baseline"]["tokens"]
    rows = [
        [
            name,
            f"{v['calls'] / n:.2f}",
            f"{v['tokens'] / n:.0f}",
            f"{v['bytes'] / n / 1024:.1f} KiB",
            f"{covered[name]:.0%}",
        ]
        for name, v in per.items()
    ]
    cross = sum(len(q["expected"]) > 1 for q in queries)

    def per_plan(name: str, key: str) -> float:
        stats = planned[name]
        return stats[key] / stats["n"] if stats["n"] else 0.0

    plan_rows = [
        [
            name,
            str(int(planned[name]["n"])),
            str(int(planned[name]["router"])),
            f"{per_plan(name, 'calls'):.2f}",
            f"{per_plan(name, 'tokens'):.0f}",
        ]
        for name in (old, new)
    ]
    token_share = (
        per_plan(new, "tokens") / per_plan(old, "tokens") if per_plan(old, "tokens") else 0
    )
    return BenchResult(
        key="economy",
        title="1. Large-model economy vs the standard supervisor pattern",
        method=f"{n} queries ({n - cross} single-domain, {cross} cross-domain; tenancy/finance/"
        "health) through tandem (twice: the supervisor planning every planned question, and "
        '`[planner] mode = "auto"` where a confident split of the router is the plan) and '
        "through `langgraph_supervisor.create_supervisor` with `create_react_agent` workers, "
        "all against the same fake OpenAI server (tool calls and handoffs go over the wire). "
        "Tokens are the `usage.total_tokens` the server returned (one token = one "
        "whitespace-separated word of the prompt, tool schemas and tool calls included); "
        "bytes are the request bodies it received.",
        headers=["system", "large calls/query", "large tokens/query", "sent/query", "coverage"],
        rows=rows,
        figures=[
            Figure(
                "tandem / baseline large-model tokens", ratio, "≤ 0.40", ratio <= 0.40, "{:.3f}"
            ),
            Figure(
                "tandem / baseline large-model calls",
                per[new]["calls"] / per["baseline"]["calls"],
                "(reported)",
                None,
            ),
            Figure(
                "supervisor tokens per planned question, router plans / supervisor plans",
                token_share,
                "≤ 0.50",
                token_share <= 0.50,
                "{:.2f}",
            ),
            Figure(
                "supervisor calls per planned question (router plans)",
                per_plan(new, "calls"),
                "≤ 1.2",
                per_plan(new, "calls") <= 1.2,
                "{:.2f}",
            ),
        ],
        extra_tables=[
            (
                "Planned questions: who planned, and what the supervisor was asked",
                ["system", "planned", "by the router", "sup calls/planned", "sup tokens/planned"],
                plan_rows,
            )
        ],
        notes=[
            "coverage = share of the expected specialists that produced an answer for the "
            "query (tandem: ok worker results; baseline: handoffs to that expert). The "
            "baseline's scripted supervisor always hands off to exactly the right experts "
            "(an oracle), so its coverage is 100 % by construction.",
            "tandem's supervisor (plan + synthesis) is the fake's rule-based model; its "
            "specialists are the fake Ollama's grounded small model (not large-model calls). "
            f"Routing and retrieval use the bundled embeddings ({EMBEDDER}; real router "
            "decisions).",
            "The fake counts `response_format` schemas as zero tokens (tandem sends one "
            "with each plan); the bytes column includes them.",
        ],
    )
