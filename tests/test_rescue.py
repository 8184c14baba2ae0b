"""``[cascade] escalation = "answer"``: an escalated direct answer is answered by a local
supervisor from the passages the specialist retrieved — one call, no plan, cited."""

from __future__ import annotations

import json
from typing import Any

from tandem.graphs.testing import FakeOllama, FakeOpenAI

MODEL = "qwen2.5:1.5b"
QUESTION = "How quickly does Brightwater Lettings return a tenant's deposit?"
UNSURE = {
    "answer": "Maybe within a month?",
    "confidence": 0.2,
    "citations": [],
    "needs_escalation": True,
}


async def test_an_escalated_answer_is_answered_from_the_specialists_passages(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.script(MODEL, UNSURE)
    fake_openai.script("Brightwater returns the deposit within 14 days [S1].")
    graph = make_graph(cascade={"escalation": "answer"})  # the fake supervisor is local
    answer = (await graph.ainvoke({"query": QUESTION}))["answer"]

    assert answer.escalated
    assert answer.text == "Brightwater returns the deposit within 14 days [S1]."
    (request,) = fake_openai.completions()  # one supervisor call: no plan, no synthesis
    prompt = request["messages"][-1]["content"]
    assert '<passage id="S1" source="' in prompt and "Brightwater" in prompt
    assert "<draft>Maybe within a month?</draft>" in prompt
    assert prompt.rstrip().endswith(f"<query>{QUESTION}</query>")
    assert len(fake_ollama.chat_requests(MODEL)) == 1  # the specialist is not asked again
    first = prompt.split('source="', 1)[1].split('"', 1)[0]  # the passage cited as [S1]
    assert [c.source for c in answer.citations] == [first]
    assert [c.purpose for c in answer.ledger.calls if c.role == "supervisor"] == ["answer"]
    assert any("answered from the" in n for n in answer.notes)


async def test_a_remote_supervisor_plans_instead_the_passages_stay_here(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.script(MODEL, UNSURE)
    plan = {"subtasks": [{"worker": "tenancy", "instruction": QUESTION}], "rationale": "t"}
    fake_openai.script(plan, "Within 14 days.")
    graph = make_graph(cascade={"escalation": "answer"}, supervisor={"egress": "remote"})
    answer = (await graph.ainvoke({"query": QUESTION}))["answer"]

    assert answer.escalated
    sent = json.dumps(fake_openai.completions())
    assert "<passage" not in sent
    purposes = [c.purpose for c in answer.ledger.calls if c.role == "supervisor"]
    assert purposes[0] == "plan"


async def test_an_unreachable_supervisor_keeps_the_specialists_answer_and_says_so(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.script(MODEL, UNSURE)
    fake_openai.fail(status=500, path="/v1/chat/completions", times=10)
    graph = make_graph(cascade={"escalation": "answer"})
    answer = (await graph.ainvoke({"query": QUESTION}))["answer"]

    assert answer.text == "Maybe within a month?"
    assert any("the supervisor could not answer" in n for n in answer.notes)
