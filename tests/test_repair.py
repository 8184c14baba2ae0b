"""Bad model output is repaired once, then degrades; invalid plans are never executed."""

from __future__ import annotations

import json
from typing import Any

from tandem.workers.testing import FakeOllama, FakeOpenAI

DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"
CROSS_Q = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)
OUT_OF_RANGE = {"answer": "21 days", "confidence": 7, "citations": [], "needs_escalation": False}


def _last_user(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


async def test_malformed_worker_json_is_repaired_once_with_the_validation_error(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.script("qwen2.5:1.5b", OUT_OF_RANGE)  # then the grounded default answers
    out = await make_graph().ainvoke({"query": DIRECT_Q})
    answer = out["answer"]

    first, second = fake_ollama.chat_requests()
    # The repair request replays the bad reply and names what was wrong with it.
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert second["messages"][-2] == {"role": "assistant", "content": json.dumps(OUT_OF_RANGE)}
    repair = _last_user(second)
    assert "confidence" in repair and "less than or equal to 1" in repair
    assert second["format"] == first["format"]

    assert [r.status for r in answer.worker_results] == ["ok"]
    assert "14 days" in answer.text
    assert not answer.escalated
    assert fake_openai.requests == []
    assert [c.purpose for c in answer.ledger.calls if c.role == "worker"] == ["answer", "repair"]


async def test_not_json_twice_gives_a_failed_result_and_the_run_still_answers(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.script("qwen2.5:1.5b", "Sure! The deposit comes back fast.", "{oops")
    out = await make_graph().ainvoke({"query": DIRECT_Q})
    answer = out["answer"]

    assert "not JSON" in _last_user(fake_ollama.chat_requests()[1])
    failed = answer.worker_results[0]
    assert failed.worker == "tenancy" and failed.status == "failed"
    assert "invalid output after one repair" in failed.reason
    assert failed.answer == "" and failed.citations == []
    assert any("worker 'tenancy' failed" in n for n in answer.notes)
    # The failure escalated: the supervisor planned, the worker answered on the retry.
    assert answer.escalated
    assert len(fake_openai.completions()) == 2
    assert answer.text.strip()
    assert [r.status for r in answer.worker_results] == ["failed", "ok"]
    # The synthesis prompt lists the plan's part, answered on the retry (the failed direct
    # attempt it replaced is not a part of its own).
    synthesis = _last_user(fake_openai.completions()[-1])
    assert 'part="1" worker="tenancy" confidence=' in synthesis
    assert 'status="failed"' not in synthesis


async def test_plan_naming_an_unknown_worker_is_repaired_then_the_step_is_dropped(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    bad_plan = {
        "subtasks": [
            {"worker": "astrology", "instruction": "What do the stars say about my rent?"},
            {"worker": "tenancy", "instruction": "Can my landlord raise the rent by 8%?"},
        ],
        "rationale": "stars and law",
    }
    fake_openai.script(bad_plan, bad_plan)  # the repair is just as bad; synthesis is rule-based
    out = await make_graph().ainvoke({"query": CROSS_Q})
    answer = out["answer"]

    plan_calls = [b for b in fake_openai.completions() if b.get("response_format")]
    assert len(plan_calls) == 2
    assert "astrology" in _last_user(plan_calls[1]) and "valid names" in _last_user(plan_calls[1])
    # The known subtask ran, nothing was sent on behalf of "astrology", and the router's
    # other specialist (finance), which the plan left out, was added with the query.
    assert [s.worker for s in out["plan"].subtasks] == ["finance", "tenancy"]
    chats = fake_ollama.chat_requests()
    assert len(chats) == 2
    assert any("Can my landlord raise the rent by 8%?" in _last_user(c) for c in chats)
    assert not any("stars" in _last_user(c) for c in chats)
    assert sorted(r.worker for r in answer.worker_results) == ["finance", "tenancy"]
    assert any("added the router's ['finance']" in n for n in answer.notes)
    assert any("dropped a subtask for unknown worker 'astrology'" in n for n in answer.notes)
    assert any("still invalid" in n for n in answer.notes)


async def test_plan_repaired_successfully_runs_the_repaired_plan(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    good_plan = {
        "subtasks": [{"worker": "finance", "instruction": "What is the Renters' Tax Credit?"}],
        "rationale": "",
    }
    fake_openai.script("this is not a plan", good_plan)
    out = await make_graph().ainvoke({"query": CROSS_Q})
    assert "not a valid plan" in _last_user(fake_openai.completions()[1])
    # The repaired plan ran; the router's tenancy match it left out was added.
    assert sorted(r.worker for r in out["answer"].worker_results) == ["finance", "tenancy"]
    assert any("asked the supervisor to repair its plan" in n for n in out["answer"].notes)


async def test_plan_longer_than_max_subtasks_is_trimmed(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    plan = {
        "subtasks": [
            {"worker": "tenancy", "instruction": "Can my landlord raise the rent by 8%?"},
            {"worker": "finance", "instruction": "How much is the Renters' Tax Credit?"},
            {"worker": "health", "instruction": "How much paracetamol can I take?"},
        ],
        "rationale": "three parts",
    }
    fake_openai.script(plan)
    out = await make_graph(max_subtasks=2).ainvoke({"query": CROSS_Q})
    answer = out["answer"]

    assert [s.worker for s in out["plan"].subtasks] == ["tenancy", "finance"]
    assert len(fake_ollama.chat_requests()) == 2
    assert {r.worker for r in answer.worker_results} == {"tenancy", "finance"}
    assert any("trimmed the plan from 3 to 2" in n for n in answer.notes)
    schema = fake_openai.completions()[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["subtasks"]["maxItems"] == 2
