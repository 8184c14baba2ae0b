"""Load: 50 concurrent graph runs against fakes with latency, through the per-host queue.

All succeed, each answer belongs to its own query (no cross-talk between runs), the
fake server never sees more requests for one model at once than the configured limit,
and memory stays flat from one batch to the next.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import tracemalloc
from typing import Any

from tandem.workers.backends._limits import limiter
from tandem.workers.testing import FakeOllama, FakeOpenAI

CHAT = "qwen2.5:1.5b"
EMBED = "nomic-embed-text"
RUNS = 50
LIMIT = 2
TOKEN = re.compile(r"\bref (zq\d{4})\b")


def _echo(request: dict[str, Any]) -> str:
    """A worker model that answers with the reference token found in its own task."""
    task = next(
        m["content"] for m in reversed(request["messages"]) if m["content"].startswith("Task:")
    )
    token = TOKEN.search(task)
    answer = f"Deposits come back within 14 days (ref {token.group(1) if token else 'none'})."
    # Cites the passages that say "14 days", so the answer stays local (a direct answer).
    return json.dumps(
        {
            "answer": answer,
            "confidence": 0.9,
            "citations": ["S1", "S2", "S3"],
            "needs_escalation": False,
        }
    )


def _query(n: int) -> str:
    return (
        "How quickly does Brightwater Lettings return a tenant's security deposit "
        f"after the tenancy ends? ref zq{n:04d}"
    )


async def _batch(graph: Any, start: int) -> list[tuple[str, Any]]:
    queries = [_query(n) for n in range(start, start + RUNS)]
    outs = await asyncio.gather(*(graph.ainvoke({"query": q}) for q in queries))
    return [(q, out["answer"]) for q, out in zip(queries, outs, strict=True)]


def _check(batch: list[tuple[str, Any]]) -> None:
    for query, answer in batch:
        token = TOKEN.search(query)
        assert token is not None
        assert answer.worker_results, answer.notes
        assert all(r.status == "ok" for r in answer.worker_results), answer.notes
        assert TOKEN.findall(answer.text) == [token.group(1)], (query, answer.text)


async def test_fifty_concurrent_runs_queue_per_model_without_cross_talk_or_leaks(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.respond_with(CHAT, _echo)
    # A low routing threshold: the reference tokens add noise to the hashed embeddings.
    graph = make_graph(ollama={"max_parallel": LIMIT}, router={"min_score": 0.05})
    await graph.runtime.ensure_ingested()
    fake_ollama.latency = 0.02
    fake_ollama.reset()

    first = await _batch(graph, 0)
    _check(first)
    chats = fake_ollama.chat_requests(CHAT)
    assert len(chats) >= RUNS and all(r.status == 200 for r in fake_ollama.requests)
    # A queue, not a flood: the server saw at most LIMIT requests per model at once (and
    # the queue was used to the full), while 50 runs were in flight.
    assert fake_ollama.max_in_flight_by_model[CHAT] == LIMIT
    assert fake_ollama.max_in_flight_by_model[EMBED] <= LIMIT
    queue = limiter(fake_ollama.url, CHAT, LIMIT).stats
    assert queue.max_active == LIMIT and queue.max_waiting >= 1  # a queue formed

    # Memory: after a warm-up batch, two more batches must not grow the heap run by run.
    del first, chats
    fake_ollama.reset()
    gc.collect()
    tracemalloc.start()
    try:
        _check(await _batch(graph, 1000))
        fake_ollama.reset()
        gc.collect()
        after_second = tracemalloc.get_traced_memory()[0]
        _check(await _batch(graph, 2000))
        fake_ollama.reset()
        gc.collect()
        after_third = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    growth = after_third - after_second
    assert growth < 1_500_000, f"heap grew by {growth / 1e6:.2f} MB over 50 runs"
    assert fake_ollama.max_in_flight_by_model[CHAT] <= LIMIT
