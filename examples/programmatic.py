"""Use tandem from Python with zero configuration.

Runs fully offline: the bundled Qwen2.5-Coder-1.5B supervises, the built-in demo
specialists (tenancy, finance, health) answer on Qwen2.5-Coder-0.5B, and each
specialist ingests its corpus into its own Chroma store on first use.

    python examples/programmatic.py
    python examples/programmatic.py --data-dir /tmp/tandem-demo \\
        --question "What is the most paracetamol I can take in a day?"

The first question is answered with ``invoke`` (a direct route: one local
specialist, no supervisor call); the second is streamed with ``astream``,
printing node updates and the supervisor's tokens as they arrive. Try
``--stream-question`` with a cross-domain question ("My rent is going up by 8%:
is that allowed, and how much can I claim back through the Renters' Tax
Credit?") to see plan → parallel specialists → streamed synthesis.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from tandem.graphs import Answer, LedgerTotals, TandemConfig, build_graph, build_ledger

DIRECT = "How quickly does Brightwater Lettings return a tenant's deposit?"
GENERAL = "Write a haiku about autumn leaves."  # no specialist fits: the supervisor answers


def totals_line(t: LedgerTotals) -> str:
    return (
        f"{t.calls} calls ({t.supervisor_calls} supervisor, {t.worker_calls} worker), "
        f"{t.tokens_in + t.tokens_out} tokens, {t.seconds:.1f} s, "
        f"${t.cost_usd:.4f}, {t.local_share:.0%} local"
    )


def report(answer: Answer) -> None:
    route = answer.route
    print(f"route: {route.kind} {list(route.workers)}{' (escalated)' if answer.escalated else ''}")
    print("citations:", ", ".join(f"{c.worker}:{c.source}" for c in answer.citations) or "none")
    for note in answer.notes:
        print("note:", note)
    print("ledger:", totals_line(answer.ledger.totals))


async def stream(graph: Any, question: str) -> Answer:
    """Print node updates and supervisor tokens while the graph runs; return the answer."""
    answer: Answer | None = None
    in_tokens = False
    async for mode, chunk in graph.astream({"query": question}, stream_mode=["custom", "updates"]):
        if mode == "custom" and chunk.get("event") == "token":
            print(chunk["text"], end="", flush=True)
            in_tokens = True
            continue
        if mode != "updates":
            continue
        if in_tokens:
            print()
            in_tokens = False
        for node, update in chunk.items():
            detail = ""
            if node == "route":
                route = update["route"]
                detail = f" → {route.kind} {', '.join(route.workers)}".rstrip()
            elif node == "worker":
                result = update["results"][0]
                detail = f" → {result.worker}: {result.status}, confidence {result.confidence:.2f}"
            print(f"[{node}{detail}]", flush=True)
            if node == "finish":
                answer = update["answer"]
    if answer is None:
        raise RuntimeError("the graph finished without an answer")
    return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default=DIRECT, help="the question to invoke")
    parser.add_argument("--stream-question", default=GENERAL, help="the question to stream")
    parser.add_argument(
        "--data-dir", type=Path, help="where stores live (default: $TANDEM_HOME or user data dir)"
    )
    args = parser.parse_args(argv)

    # No tandem.toml: the embedded engine and the built-in demo workers.
    config = TandemConfig(data_dir=args.data_dir) if args.data_dir else TandemConfig()
    graph = build_graph(config)

    print("Q:", args.question)
    state = graph.invoke({"query": args.question})
    first: Answer = state["answer"]
    print("A:", first.text)
    report(first)

    print("\nQ:", args.stream_question)
    second = asyncio.run(stream(graph, args.stream_question))
    print("A:", second.text)
    report(second)

    session = build_ledger([*first.ledger.calls, *second.ledger.calls])
    print("\nsession ledger:", totals_line(session.totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
