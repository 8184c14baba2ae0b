"""Threads persist in the configured checkpointer and survive reopening it (a restart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tandem.graphs import TandemConfig, build_graph, open_checkpointer, open_checkpointer_sync
from tandem.graphs.checkpoint import DURABILITY, list_threads, sqlite_path
from tandem.workers import ConfigError

DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"


async def test_sqlite_thread_survives_reopening(make_config: Any) -> None:
    config = make_config()
    assert config.checkpointer == "sqlite"
    thread = {"configurable": {"thread_id": "t-restart"}}
    async with open_checkpointer(config) as saver:
        graph = build_graph(config, checkpointer=saver)
        await graph.ainvoke({"query": DIRECT_Q}, thread, durability=DURABILITY)
    assert (config.data_dir / "threads.sqlite").stat().st_size > 0
    async with open_checkpointer(config) as saver:  # a new process would do the same
        assert await list_threads(saver) == ["t-restart"]
        graph = build_graph(config, checkpointer=saver)
        state = await graph.aget_state(thread)
        assert state.values["messages"][0].content == DIRECT_Q
        out = await graph.ainvoke({"query": "And what about pets?"}, thread)
        assert len(out["messages"]) == 4


def test_sync_checkpointer_and_explicit_path(make_config: Any, tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "t.sqlite"
    config = make_config(checkpointer=f"sqlite:///{db}")
    assert sqlite_path(config) == db
    thread = {"configurable": {"thread_id": "s-1"}}
    with open_checkpointer_sync(config) as saver:
        build_graph(config, checkpointer=saver).invoke({"query": DIRECT_Q}, thread)
    with open_checkpointer_sync(config) as saver:
        state = build_graph(config, checkpointer=saver).get_state(thread)
        assert len(state.values["messages"]) == 2


async def test_memory_and_unsupported_schemes(tmp_path: Path) -> None:
    async with open_checkpointer(TandemConfig(checkpointer="memory", data_dir=tmp_path)) as s:
        assert await list_threads(s) == []
    assert not (tmp_path / "threads.sqlite").exists()
    with pytest.raises(ConfigError, match="unsupported checkpointer 'redis://x'"):
        async with open_checkpointer(TandemConfig(checkpointer="redis://x", data_dir=tmp_path)):
            pass
    bad = TandemConfig(checkpointer="sqlite://rel.db")
    with pytest.raises(ConfigError, match="absolute path"), open_checkpointer_sync(bad):
        pass


async def test_follow_up_is_routed_with_the_previous_question(
    make_graph: Any, fake_ollama: Any
) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    graph = make_graph(checkpointer=InMemorySaver())
    follow_up = "And what if I refuse?"
    alone = await graph.ainvoke({"query": follow_up}, {"configurable": {"thread_id": "f-0"}})
    assert alone["answer"].route.kind == "supervisor"  # on its own it matches no specialist
    thread = {"configurable": {"thread_id": "f-1"}}
    await graph.ainvoke({"query": DIRECT_Q}, thread)
    out = await graph.ainvoke({"query": follow_up}, thread)
    route = out["answer"].route
    assert route.kind == "direct" and route.workers == ["tenancy"]
    assert route.reason.startswith("follow-up: ")
    result = out["answer"].worker_results[0]
    assert result.instruction == follow_up
    prompts = [r["messages"][-1]["content"] for r in fake_ollama.chat_requests()[1:]]
    assert prompts and all(
        f"Context, the user's full question: {DIRECT_Q}\n{follow_up}" in p for p in prompts
    )


async def test_a_users_own_permissive_checkpointer_gives_no_unregistered_type_warnings(
    make_graph: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    # As when langgraph is imported before tandem: LangGraph's permissive default.
    saver = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=True))
    graph = make_graph(checkpointer=saver)
    thread = {"configurable": {"thread_id": "mine"}}
    with caplog.at_level("WARNING"):
        await graph.ainvoke(
            {"query": "How quickly does Brightwater Lettings return deposits?"}, thread
        )
        out = await graph.ainvoke({"query": "And how much can they keep back?"}, thread)
    assert len(out["messages"]) == 4  # the earlier turn was read back
    assert out["answer"].route is not None
    noisy = [
        r.getMessage()
        for r in caplog.records
        if "msgpack" in r.getMessage() or "eserializ" in r.getMessage()
    ]
    assert noisy == []
    assert saver.serde._allowed_msgpack_modules is True  # the caller's object is unchanged
