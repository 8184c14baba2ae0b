"""Weak planned parts answered inside the synthesis call: a local supervisor with a
structured synthesis is shown the passages of a part its specialist answered with a low
``p_correct`` (``[cascade] recheck_below``) instead of that answer and answers it there — one
call for the parts and the conclusion, citing what states it. (A part its specialist said
is not covered gets a focused call of its own first: tests/test_rescue.py.)"""

from __future__ import annotations

import json
from typing import Any

from tandem.agents.supervisor import split_concluded
from tandem.graphs.testing import FakeOllama, FakeOpenAI

MODEL = "qwen2.5:1.5b"
CROSS = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)
RENT = "Is an 8% rent increase allowed?"
CREDIT = "How much is the Renters' Tax Credit?"
PLAN = {
    "subtasks": [
        {"worker": "tenancy", "instruction": RENT},
        {"worker": "finance", "instruction": CREDIT},
    ],
    "rationale": "two parts",
}


def _workers(fake_ollama: FakeOllama, rent: str) -> None:
    """The tenancy specialist answers ``rent`` (cited, confident), finance the credit."""

    def worker(body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        answer = rent if RENT in prompt else "15% of the rent paid."
        return json.dumps(
            {"answer": answer, "confidence": 0.9, "citations": ["S1"], "needs_escalation": False}
        )

    fake_ollama.respond_with(MODEL, worker)


async def _ask(make_graph: Any, below: float | None) -> Any:
    graph = make_graph(
        cascade={"escalation": "answer", "recheck_below": below},
        planner={"synthesis": "structured"},
    )
    return (await graph.ainvoke({"query": CROSS}))["answer"]


async def test_a_weak_part_is_answered_from_its_passages_in_the_synthesis_call(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    _workers(fake_ollama, "Yes, 8% is allowed.")
    fake_openai.script(
        PLAN,
        "Part 1: No: rent rises are capped at 5.5% a year.\n"
        "Part 2: 15% of the rent paid, capped at VC 1,000.\n"
        "Conclusion: The 8% rise is too high; the credit still applies.",
    )
    answer = await _ask(make_graph, 1.0)  # every answer below 1.0: both parts are weak

    purposes = [c.purpose for c in answer.ledger.calls if c.role == "supervisor"]
    assert purposes == ["plan", "conclude"]  # one call answers the parts and concludes
    prompt = fake_openai.completions()[1]["messages"][-1]["content"]
    assert prompt.count("Passages to answer it from") == 2
    assert "Yes, 8% is allowed" not in prompt  # the weak answers are not shown
    assert prompt.count("<passage ") == 4  # [cascade] rescue_passages = 2 per part
    assert "5.5%" in answer.text and "VC 1,000" in answer.text
    assert "Yes, 8% is allowed" not in answer.text
    assert answer.text.endswith("The 8% rise is too high; the credit still applies.")
    # Each part cites the passage that states its new answer.
    sources = {c.worker: c.source for c in answer.citations}
    assert "rent-increases" in sources["tenancy"]
    assert "renters-tax-credit" in sources["finance"]
    assert any("was not reliable" in n for n in answer.notes)
    assert answer.missing == []


async def test_a_confident_part_keeps_its_answer_and_the_conclusion_is_all_that_is_asked(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    _workers(fake_ollama, "No: rises are capped at 5.5% a year.")
    fake_openai.script(PLAN, "The rise is too high; the credit helps.")
    answer = await _ask(make_graph, None)  # no recheck_below: an answered part is not weak

    prompt = fake_openai.completions()[1]["messages"][-1]["content"]
    assert "<passage" not in prompt and "Answer: No: rises are capped at 5.5%" in prompt
    assert answer.text.startswith("No: rises are capped at 5.5% a year. [tenancy]")
    assert answer.text.endswith("The rise is too high; the credit helps.")


async def test_a_weak_part_the_supervisor_cannot_answer_keeps_the_specialists_answer(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    _workers(fake_ollama, "No: rises are capped at 5.5% a year.")
    fake_openai.script(
        PLAN,
        "Part 1: The passages do not say.\nPart 2: 15% of the rent paid.\n"
        "Conclusion: The rise is too high.",
    )
    answer = await _ask(make_graph, 1.0)

    assert "No: rises are capped at 5.5% a year. [tenancy]" in answer.text
    assert "do not say" not in answer.text
    assert any("gave no answer to 'tenancy''s part" in n for n in answer.notes)


async def test_what_the_supervisor_copied_from_the_prompt_is_not_the_parts_answer(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    # The 1.5B often echoes the part's question and the passage tags before its answer,
    # or answers a part with its question alone.
    _workers(fake_ollama, "No: rises are capped at 5.5% a year.")
    fake_openai.script(
        PLAN,
        f'Part 1: {RENT}\nAnswer: <passage source="x.md">Rises are capped at 5.5%.</passage>\n'
        f"Part 2: {CREDIT}\nConclusion: The rise is too high.",
    )
    answer = await _ask(make_graph, 1.0)

    assert answer.text.startswith("Rises are capped at 5.5%. [tenancy]")
    assert "<passage" not in answer.text and "Answer:" not in answer.text
    # Part 2 was answered with its question only: the specialist's answer stays.
    assert "15% of the rent paid" in answer.text and CREDIT not in answer.text


async def test_a_weak_part_answered_with_a_figure_its_passages_do_not_state_keeps_its_own(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    # Shown both parts, the 1.5B sometimes answers one with the other's figure.
    _workers(fake_ollama, "No: rises are capped at 5.5% a year.")
    fake_openai.script(
        PLAN,
        "Part 1: The credit is 15% of the rent.\nPart 2: 15% of the rent paid, capped at "
        "VC 1,000.\nConclusion: The credit helps.",
    )
    answer = await _ask(make_graph, 1.0)

    assert answer.text.startswith("No: rises are capped at 5.5% a year. [tenancy]")
    assert "capped at VC 1,000. [finance]" in answer.text  # its own passages state it
    assert any("gave no answer to 'tenancy''s part" in n for n in answer.notes)


def test_the_reply_splits_into_the_rechecked_parts_and_the_conclusion() -> None:
    reply = "**Part 2:** 15% of the rent.\n**Conclusion:** Both apply."
    assert split_concluded(reply, {1}) == ({1: "15% of the rent."}, "Both apply.")
    # A part that was not rechecked is not taken from the reply.
    both = "Part 1: Yes.\nPart 2: 15%.\nConclusion: Fine."
    assert split_concluded(both, {1}) == ({1: "15%."}, "Fine.")
    # One rechecked part, answered without its label.
    assert split_concluded("15% of the rent.\nConclusion: Fine.", {0}) == (
        {0: "15% of the rent."},
        "Fine.",
    )
    # An unlabelled paragraph after the parts is the conclusion.
    assert split_concluded("Part 1: 5.5% a year.\n\nSo the rise is too high.", {0}) == (
        {0: "5.5% a year."},
        "So the rise is too high.",
    )
    # A conclusion written on a part's line.
    inline = "Part 1: Within 7 days. Conclusion: That is the rule."
    assert split_concluded(inline, {0}) == ({0: "Within 7 days."}, "That is the rule.")
    # No labels at all: the reply is the conclusion (checked for figures by the caller).
    assert split_concluded("Both apply.", {0}) == ({}, "Both apply.")


async def test_a_weak_part_nothing_supports_is_shown_as_its_passages_sentence(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    # The 0.5B answers with a figure its passages do not hold, and the 1.5B answers the
    # part with the other part's figure: neither is shown; the sentence of the part's own
    # passages that answers its question is, quoted and cited.
    _workers(fake_ollama, "Yes, up to 9.5% is allowed.")
    fake_openai.script(
        PLAN,
        "Part 1: The credit is 15% of the rent.\nPart 2: 15% of the rent paid, capped at "
        "VC 1,000.\nConclusion: The credit helps.",
    )
    answer = await _ask(make_graph, 1.0)

    first = answer.text.split("\n\n")[0]
    assert first.startswith("Its passages say: \u201c") and first.endswith("\u201d [tenancy]")
    assert "9.5%" not in answer.text
    assert "capped at VC 1,000. [finance]" in answer.text
    assert any(c.worker == "tenancy" and "rent-increases" in c.source for c in answer.citations)
    assert any("is quoted instead" in n and "'tenancy'" in n for n in answer.notes)
