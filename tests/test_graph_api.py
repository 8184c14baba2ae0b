"""The compiled graph behaves like any LangGraph graph: invoke, ainvoke, astream, checkpointers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from tandem.workers import UsageError
from tandem.workers.embedding import run_sync
from tandem.workers.testing import FakeOllama, FakeOpenAI

DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"
CROSS_Q = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)


def test_sync_invoke_direct(make_graph: Any, fake_openai: FakeOpenAI) -> None:
    out = make_graph().invoke({"query": DIRECT_Q})
    assert out["answer"].route.kind == "direct"
    assert "14 days" in out["answer"].text
    assert fake_openai.requests == []


def test_sync_invoke_plan_with_parallel_workers_ingesting_lazily(
    make_graph: Any, tmp_path: Path, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    # Empty stores: both workers ingest on first use, each from its own sync-node event loop.
    graph = make_graph(data_dir=tmp_path / "empty")
    out = graph.invoke({"query": CROSS_Q})
    answer = out["answer"]
    assert answer.route.kind == "plan"
    assert {r.worker for r in answer.worker_results} == {"tenancy", "finance"}
    assert all(r.status == "ok" for r in answer.worker_results), answer.worker_results
    assert answer.notes == []
    assert len(fake_openai.completions()) == 2
    counts = {n: run_sync(store.count()) for n, store in graph.runtime.stores.items()}
    assert counts["tenancy"] > 0 and counts["finance"] > 0
    assert counts["health"] == 0  # only the workers that were asked ingest


async def test_ainvoke_plan(make_graph: Any) -> None:
    out = await make_graph().ainvoke({"query": CROSS_Q})
    assert out["answer"].route.kind == "plan"
    assert len(out["answer"].citations) >= 2


async def test_astream_updates_shows_the_direct_path_in_order(make_graph: Any) -> None:
    graph = make_graph()
    nodes = [
        name
        async for chunk in graph.astream({"query": DIRECT_Q}, stream_mode="updates")
        for name in chunk
    ]
    assert nodes == ["guard", "route", "worker", "check", "finish"]


async def test_astream_updates_shows_the_planned_path(make_graph: Any) -> None:
    graph = make_graph()
    nodes = [
        name
        async for chunk in graph.astream({"query": CROSS_Q}, stream_mode="updates")
        for name in chunk
    ]
    assert nodes == ["guard", "route", "plan", "worker", "worker", "synthesize", "finish"]


async def test_astream_custom_streams_synthesis_tokens(make_graph: Any) -> None:
    graph = make_graph()
    pieces = [
        chunk["text"]
        async for chunk in graph.astream({"query": CROSS_Q}, stream_mode="custom")
        if chunk.get("event") == "token"
    ]
    final = await graph.ainvoke({"query": CROSS_Q})
    assert len(pieces) > 1
    assert "".join(pieces).strip() == final["answer"].text


async def test_checkpointer_threads_keep_history_for_the_supervisor(
    make_graph: Any, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t-1"}}

    first = await graph.ainvoke({"query": DIRECT_Q}, thread)
    assert fake_openai.requests == []
    second = await graph.ainvoke({"query": CROSS_Q}, thread)

    messages = second["messages"]
    assert [type(m) for m in messages] == [HumanMessage, AIMessage, HumanMessage, AIMessage]
    assert messages[0].content == DIRECT_Q
    assert messages[1].content == first["answer"].text
    assert messages[2].content == CROSS_Q
    # Per-turn state is reset: only this turn's results are reported.
    assert {r.worker for r in second["answer"].worker_results} == {"tenancy", "finance"}

    plan_prompt = fake_openai.completions()[0]["messages"][-1]["content"]
    assert "<history>" in plan_prompt
    history = plan_prompt.split("<history>")[1].split("</history>")[0]
    assert "user: How quickly does Brightwater Lettings return deposits?" in history
    assert "assistant: " in history

    state = await graph.aget_state(thread)
    assert len(state.values["messages"]) == 4

    other = {"configurable": {"thread_id": "t-2"}}
    fresh = await graph.ainvoke({"query": CROSS_Q}, other)
    assert len(fresh["messages"]) == 2
    assert "<history>" not in fake_openai.completions()[-2]["messages"][-1]["content"]


async def test_empty_or_huge_query_is_a_usage_error(make_graph: Any) -> None:
    graph = make_graph()
    with pytest.raises(UsageError, match="empty"):
        await graph.ainvoke({"query": "   "})
    with pytest.raises(UsageError, match="limit is 8000"):
        await graph.ainvoke({"query": "word " * 2000})


def test_the_compiled_graph_is_typed_and_carries_its_runtime(make_graph: Any) -> None:
    from langgraph.graph.state import CompiledStateGraph

    from tandem.graphs import Runtime, TandemGraph

    plain = make_graph()
    assert isinstance(plain, TandemGraph) and isinstance(plain, CompiledStateGraph)
    assert isinstance(plain.runtime, Runtime)
    assert plain.default_durability is None  # nothing to make durable
    threaded = make_graph(checkpointer=InMemorySaver())
    assert threaded.default_durability == "sync"  # LangGraph's public durability argument
    # LangGraph's own copies (with_config …) stay TandemGraphs on the same runtime.
    copy = threaded.with_config(recursion_limit=30)
    assert isinstance(copy, TandemGraph)
    assert copy.runtime is threaded.runtime and copy.default_durability == "sync"


async def test_a_session_answers_without_a_checkpointer_but_keeps_no_threads(
    make_graph: Any, fake_openai: FakeOpenAI
) -> None:
    from tandem.graphs import Session

    session = Session(make_graph())
    events: list[dict[str, Any]] = []
    answer = await session.ask(DIRECT_Q, events.append)
    assert "14 days" in answer.text
    streamed = "".join(e["text"] for e in events if e.get("event") == "token")
    assert streamed.strip() == answer.text.strip()
    assert session.last is not None and [n.name for n in session.last.nodes][-1] == "finish"
    assert session.ledger().totals.calls == len(answer.ledger.calls)
    with pytest.raises(UsageError, match="no checkpointer"):
        await session.threads()
