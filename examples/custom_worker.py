"""Add a specialist in code: a ``WorkerSpec`` for a fictional bike shop.

The worker is passed to ``build_graph(config, workers=[spec])``; the built-in demo
workers are switched off, so it is the only specialist. Everything runs offline on
the bundled models.

    python examples/custom_worker.py
    python examples/custom_worker.py --data-dir /tmp/bikes \\
        --question "How much does it cost to rent an e-bike for a day?"
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from tandem.graphs import Answer, TandemConfig, build_graph
from tandem.workers import WorkerSpec

KNOWLEDGE = Path(__file__).resolve().parent / "custom_worker_knowledge"

BIKES = WorkerSpec(
    name="bikes",
    description="Cogwheel Cycles, a bike shop in Larkhaven: opening hours, servicing and "
    "repair prices, frame and e-bike battery warranty, bike and e-bike rental.",
    examples=(
        "When is Cogwheel Cycles open?",
        "How much is a bike service?",
        "What warranty do I get on an e-bike battery?",
        "How much does it cost to rent a bike?",
    ),
    model="embedded:qwen2.5-coder-0.5b",
    system_prompt="You are the assistant of the Cogwheel Cycles bike shop. Answer only from "
    "the passages, quoting their prices and durations exactly. If they do not cover the "
    "question, say so.",
    knowledge=(KNOWLEDGE,),
    top_k=3,
)


async def main(question: str, data_dir: Path | None) -> Answer:
    config = TandemConfig(
        builtin_workers=False,
        supervisor={"model": "embedded/qwen2.5-coder-1.5b"},
        router={"embed_model": "embedded:qwen2.5-coder-0.5b"},
        **({"data_dir": data_dir} if data_dir else {}),
    )
    graph = build_graph(config, workers=[BIKES])

    # Knowledge is ingested lazily on first use; doing it up front keeps it out of the answer's
    # ledger. Ingestion is idempotent: a store that already holds chunks is left as it is.
    for name, report in (await graph.runtime.ensure_ingested(["bikes"])).items():
        print(f"ingested {name}: {report.files} files, {report.added} chunks")

    state = await graph.ainvoke({"query": question})
    return state["answer"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Ask the bike-shop specialist a question.")
    parser.add_argument("--question", default="How long is the warranty on an e-bike battery?")
    parser.add_argument(
        "--data-dir", type=Path, help="where stores live (default: $TANDEM_HOME or user data dir)"
    )
    args = parser.parse_args()

    answer = asyncio.run(main(args.question, args.data_dir))
    print("Q:", args.question)
    print("A:", answer.text)
    escalated = " (escalated)" if answer.escalated else ""
    print(f"route: {answer.route.kind} {list(answer.route.workers)}{escalated}")
    print("citations:", ", ".join(f"{c.worker}:{c.source}" for c in answer.citations) or "none")
    t = answer.ledger.totals
    print(
        f"ledger: {t.calls} calls ({t.supervisor_calls} supervisor, {t.worker_calls} worker), "
        f"{t.seconds:.1f} s, ${t.cost_usd:.4f}, {t.local_share:.0%} local"
    )
