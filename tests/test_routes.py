"""End-to-end routing through the graph: direct, plan (parallel workers), supervisor, escalation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tandem.graphs.testing import FakeOllama, FakeOpenAI, ScriptedSupervisor

DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"
CROSS_Q = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)
OFF_TOPIC_Q = "Who painted the Mona Lisa?"


def _plan_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [b for b in fake.completions() if b.get("response_format")]


def _synthesis_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [b for b in fake.completions() if not b.get("response_format")]


async def test_single_domain_question_is_answered_locally_without_the_supervisor(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph()
    out = await graph.ainvoke({"query": DIRECT_Q})
    answer = out["answer"]

    assert answer.route.kind == "direct"
    assert answer.route.workers == ["tenancy"]
    assert fake_openai.requests == []
    assert not answer.escalated
    assert "14 days" in answer.text
    assert {c.source for c in answer.citations} == {"11-brightwater-lettings.md"}
    assert all(c.worker == "tenancy" for c in answer.citations)
    assert [r.status for r in answer.worker_results] == ["ok"]
    assert len(fake_ollama.chat_requests()) == 1
    assert answer.ledger.totals.supervisor_calls == 0
    assert answer.ledger.totals.local_share == 1.0


async def test_cross_domain_question_plans_runs_workers_in_parallel_then_synthesizes_once(
    make_graph: Any, ingest: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    # The server runs 4 requests per model in parallel (tandem's default queue allows 1).
    graph = make_graph(ollama={"max_parallel": 4})
    await ingest(graph)
    fake_ollama.reset()
    fake_ollama.latency = 0.3  # every request now takes 0.3 s: parallel calls must overlap

    out = await graph.ainvoke({"query": CROSS_Q})
    answer = out["answer"]

    assert answer.route.kind == "plan"
    assert set(answer.route.workers) == {"tenancy", "finance"}
    assert len(out["plan"].subtasks) >= 2
    assert {r.worker for r in answer.worker_results} == {"tenancy", "finance"}
    assert all(r.status == "ok" for r in answer.worker_results)

    chats = fake_ollama.requests_to("/api/chat")
    assert len(chats) == len(out["plan"].subtasks)
    # Requests are recorded in arrival order: b overlaps a when it arrived before a ended.
    overlapping = [
        (a, b) for i, a in enumerate(chats) for b in chats[i + 1 :] if b.started < a.ended
    ]
    assert overlapping, "the workers' /api/chat requests ran one after another"

    assert len(_plan_requests(fake_openai)) == 1
    assert len(_synthesis_requests(fake_openai)) == 1
    assert {c.worker for c in answer.citations} == {"tenancy", "finance"}
    assert "[tenancy]" in answer.text and "[finance]" in answer.text


async def test_no_matching_worker_goes_to_the_supervisor_alone(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph()
    out = await graph.ainvoke({"query": OFF_TOPIC_Q})
    answer = out["answer"]

    assert answer.route.kind == "supervisor"
    assert fake_ollama.chat_requests() == []
    assert len(fake_openai.completions()) == 1
    assert answer.text == f"Supervisor answer to: {OFF_TOPIC_Q}"
    assert answer.worker_results == []


async def test_low_confidence_direct_answer_escalates_to_plan_and_synthesis(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.script(
        "qwen2.5:1.5b",
        {
            "answer": "Not sure, maybe a month?",
            "confidence": 0.1,
            "citations": [],
            "needs_escalation": False,
        },
    )
    graph = make_graph()
    out = await graph.ainvoke({"query": DIRECT_Q})
    answer = out["answer"]

    assert answer.route.kind == "direct"
    assert answer.escalated is True
    assert any("not confident" in n and "0.10" in n for n in answer.notes)
    plans, syntheses = _plan_requests(fake_openai), _synthesis_requests(fake_openai)
    assert len(plans) == 1 and len(syntheses) == 1
    # The supervisor is shown the unconfident attempt when planning.
    plan_prompt = plans[0]["messages"][-1]["content"]
    assert "Not sure, maybe a month?" in plan_prompt
    # The planned subtask ran (with the default grounded fake) and fed the synthesis.
    assert [r.confidence for r in answer.worker_results] == [0.1, 0.9]
    assert "14 days" in answer.text
    assert answer.ledger.totals.supervisor_calls == 2


async def test_worker_asking_for_escalation_escalates_even_when_confident(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.script(
        "qwen2.5:1.5b",
        {"answer": "Ask a lawyer.", "confidence": 0.95, "citations": [], "needs_escalation": True},
    )
    out = await make_graph().ainvoke({"query": DIRECT_Q})
    assert out["answer"].escalated is True
    assert any("asked to escalate" in n for n in out["answer"].notes)
    assert len(fake_openai.completions()) == 2


async def test_scripted_supervisor_drives_the_graph(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    plan = {
        "subtasks": [
            {"worker": "tenancy", "instruction": "Can my landlord raise the rent by 8%?"},
            {"worker": "finance", "instruction": "How much is the Renters' Tax Credit?"},
        ],
        "rationale": "one tenancy part, one tax part",
    }
    sup = ScriptedSupervisor(plan, "Final answer from the script.")
    graph = make_graph(supervisor_llm=sup)
    out = await graph.ainvoke({"query": CROSS_Q})

    # The scripted synthesis drops the specialists' facts: their parts are added after it.
    assert out["answer"].text.startswith("Final answer from the script.\n\n")
    assert any("the synthesis left out" in n for n in out["answer"].notes)
    assert sup.remaining == 0
    assert len(sup.calls) == 2
    instructions = {r.instruction for r in out["answer"].worker_results}
    assert instructions == {s["instruction"] for s in plan["subtasks"]}
    assert fake_openai.requests == []  # the configured litellm supervisor was replaced
    rows = [c for c in out["answer"].ledger.calls if c.role == "supervisor"]
    assert [c.model for c in rows] == ["scripted/supervisor"] * 2


async def test_scripted_supervisor_fails_loudly_on_an_unexpected_call(make_graph: Any) -> None:
    plan = {"subtasks": [{"worker": "tenancy", "instruction": "Rent rise?"}], "rationale": ""}
    sup = ScriptedSupervisor(json.dumps(plan))  # no synthesis reply scripted
    graph = make_graph(supervisor_llm=sup)
    with pytest.raises(AssertionError, match=r"unexpected call #2 \(synthesize\)"):
        await graph.ainvoke({"query": CROSS_Q})
