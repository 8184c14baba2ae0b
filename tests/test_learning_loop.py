"""The learning loop through the other front doors: ``tandem serve`` and the router.

Against the fake Ollama (workers, embeddings) and the fake OpenAI-compatible supervisor.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from typing import Any

import httpx
import openai
from langgraph.checkpoint.memory import InMemorySaver

from tandem.agents.shell.serve import SessionEngine, create_app
from tandem.agents.shell.serve.testing import StreamingASGITransport
from tandem.graphs import Runtime, TandemConfig
from tandem.workers.testing import FakeOllama, FakeOpenAI

from .test_learning import (
    ANSWER,
    ESCALATE,
    MODEL,
    QUESTION,
    _answer_from_learned,
    _escalation,
)

KEY = "sk-tandem-test-0123456789"


async def test_a_served_answer_reports_what_it_taught_and_kept_memory_answers_locally(
    make_config: Callable[..., TandemConfig], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    runtime = Runtime(make_config())
    await runtime.ensure_ingested()
    app = create_app(SessionEngine(runtime, InMemorySaver()), runtime.config.serve, api_keys=(KEY,))
    http = httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://tandem")
    user: Any = [{"role": "user", "content": QUESTION}]
    async with openai.AsyncOpenAI(
        api_key=KEY, base_url="http://tandem/v1", http_client=http
    ) as client:
        _escalation(fake_ollama, fake_openai)
        first = await client.chat.completions.create(model="tandem", messages=user)
        taught = first.model_extra["tandem"]["learning"]  # type: ignore[index]
        (rid,) = taught["records"]
        assert stat.S_IMODE(runtime.learning.dir.stat().st_mode) == 0o700  # owner only
        assert taught["pending"] == [rid] and taught["kept"] == []
        assert ANSWER.split(",")[0] in (first.choices[0].message.content or "")

        await runtime.learning.keep([rid])  # what `tandem memory keep ID` does
        fake_ollama.respond_with(MODEL, _answer_from_learned(ANSWER, 0.9))
        before = len(fake_openai.completions())
        again = await client.chat.completions.create(model="tandem", messages=user)
    ext = again.model_extra["tandem"]  # type: ignore[index]
    assert len(fake_openai.completions()) == before and not ext["escalated"]
    assert ext["learning"]["used"] == [f"learned:{rid}"]
    assert f"learned:{rid}" in [c["source"] for c in ext["citations"]]


# -- router feedback into the learned router --------------------------------------------------
DAMP = "What should I do about damp and mould making my child cough in our rented flat?"


def _only_health_knows(request: dict[str, Any]) -> str:
    """The tenancy specialist is unsure; the health specialist answers from its passages."""
    if "tenancy specialist" in request["messages"][0]["content"]:
        return json.dumps(ESCALATE)
    return json.dumps(
        {
            "answer": "Dry and ventilate the room and see a doctor if the cough lasts.",
            "confidence": 0.9,
            "citations": ["S1"],
            "needs_escalation": False,
        }
    )


async def test_an_approved_routing_correction_changes_a_later_routing_decision(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph(router={"kind": "learned"})  # [learning] routing = "approve"
    rt = graph.runtime
    first = await graph.ainvoke({"query": DAMP})
    assert first["answer"].route.workers == ["tenancy"]  # the router's guess
    # ... which was wrong: tenancy escalates, the supervisor hands it to health, which knows.
    fake_ollama.respond_with(MODEL, _only_health_knows)
    fake_openai.script(
        {"subtasks": [{"worker": "health", "instruction": DAMP}], "rationale": "health"},
        "Dry and ventilate the room; see a doctor if the cough lasts. [health]",
    )
    taught = (await graph.ainvoke({"query": DAMP}))["answer"]
    assert taught.escalated and taught.learning.records == []  # the route was wrong, not tenancy
    (cid,) = taught.learning.routing
    assert rt.learning.routes() == []  # approve: nothing trains the router yet

    assert await rt.learning.approve_routing([cid]) == 1  # `tandem router feedback --approve`
    await rt.router.refitted()
    assert [r.workers for r in rt.learning.routes()] == [("health",)]
    before = len(fake_openai.completions())
    later = (await graph.ainvoke({"query": DAMP}))["answer"]
    assert later.route.kind == "direct" and later.route.workers == ["health"]
    assert not later.escalated and len(fake_openai.completions()) == before
    # The feedback is part of what the router's cache key hashes: a new runtime on the same
    # data dir loads the model fitted with it.
    again = make_graph(router={"kind": "learned"}).runtime.router
    decision, _ = await again.decide(DAMP)
    assert decision.workers == ["health"] and again.learned.fit_info.cached
