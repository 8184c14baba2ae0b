"""Direct answers stream too: the worker's JSON is decoded to answer text as it arrives."""

from __future__ import annotations

import json
from typing import Any

from tandem.graphs._stream import AnswerExtractor
from tandem.workers.testing import FakeOllama

DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"


def test_extractor_decodes_escapes_split_anywhere() -> None:
    answer = 'Deposits: "14 days" \\ café ☕\nsecond line'
    raw = json.dumps({"confidence": 0.9, "answer": answer, "citations": ["S1"]})
    for size in (1, 2, 3, 7):
        x = AnswerExtractor()
        pieces = [x.feed(raw[i : i + size]) for i in range(0, len(raw), size)]
        assert "".join(pieces) == answer
        assert x.state == "done"
        assert sum(bool(p) for p in pieces) > 3  # it really arrived in pieces


async def test_direct_answer_streams_as_token_events(make_graph: Any) -> None:
    graph = make_graph()
    events: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    async for mode, chunk in graph.astream({"query": DIRECT_Q}, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
        else:
            final = chunk
    tokens = [e for e in events if e["event"] == "token"]
    assert len(tokens) > 3
    assert {e["worker"] for e in tokens} == {"tenancy"}
    assert "".join(e["text"] for e in tokens) == final["answer"].text
    assert "14 days" in final["answer"].text


async def test_escalation_resets_the_streamed_draft(
    make_graph: Any, fake_ollama: FakeOllama
) -> None:
    low = {"answer": "not sure", "confidence": 0.1, "citations": [], "needs_escalation": True}
    fake_ollama.script("qwen2.5:1.5b", json.dumps(low))
    graph = make_graph()
    events = [c async for c in graph.astream({"query": DIRECT_Q}, stream_mode="custom")]
    kinds = [e["event"] for e in events]
    assert "reset" in kinds
    first_reset = kinds.index("reset")
    assert "".join(e["text"] for e in events[:first_reset] if e["event"] == "token") == "not sure"
