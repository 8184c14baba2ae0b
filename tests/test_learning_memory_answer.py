"""The cascade's memory step: local model → answer memory → supervisor (graphs/_memory_answer.py).

Against the fakes: an unsure specialist whose store holds an approved learned passage for the
question is answered from that memory with zero supervisor requests and a ``learned:``
citation; a question close in wording that asks something else is not; the curated corpus
still wins on conflicts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from tandem.workers.memory import asks_else
from tandem.workers.testing import FakeOllama, FakeOpenAI

from .test_learning import ESCALATE, MODEL, PLAN
from .test_learning_trust import kept

QUESTION = "What kind of insurance covers a tenant's own furniture in a rented flat?"
REMEMBERED = "Contents insurance, which the tenant buys, covers the tenant's own furniture."
NEAR_MISS = "What kind of insurance covers the landlord's building walls in a rented flat?"
"""Close in wording to QUESTION, asking something else (buildings insurance)."""


async def _ask(graph: Any, query: str) -> Any:
    return (await graph.ainvoke({"query": query, "force_worker": None}))["answer"]


def _direct(graph: Any, monkeypatch: Any) -> None:
    """The router sends every question to tenancy (as a labelled router would)."""
    from tandem.agents.router import RouteDecision

    rt = graph.runtime

    async def decide(query: str, calls: Any = None) -> tuple[RouteDecision, list[float]]:
        vector = (await rt.router.embedder.embed([query])).vectors[0]
        return RouteDecision(kind="direct", workers=["tenancy"], reason="tenancy fits"), vector

    monkeypatch.setattr(rt.router, "decide", decide)


def _copies_learned(request: dict[str, Any]) -> str:
    """The worst small model: it copies the learned passage's answer whatever was asked,
    unsure of itself (below the cascade's bar) and citing it."""
    prompt = request["messages"][-1]["content"]
    found = re.search(r'<passage id="(S\d+)" source="learned:', prompt)
    return json.dumps(
        {
            "answer": "Contents insurance.",
            "confidence": 0.3,
            "citations": [found.group(1)] if found else [],
            "needs_escalation": False,
        }
    )


async def test_an_unsure_specialist_is_answered_from_memory_without_the_supervisor(
    make_graph: Callable[..., Any],
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
    monkeypatch: Any,
) -> None:
    graph = make_graph(learning={"trust_memory_above": 0.3})
    _direct(graph, monkeypatch)
    rid = await kept(graph, QUESTION, REMEMBERED)
    fake_ollama.respond_with(MODEL, lambda request: json.dumps(ESCALATE))  # "not covered"
    before = len(fake_openai.completions())
    answer = await _ask(graph, QUESTION)
    assert len(fake_openai.completions()) == before  # zero supervisor requests
    assert answer.ledger.totals.supervisor_calls == 0 and not answer.escalated
    assert answer.text == REMEMBERED and answer.status == "complete"
    assert [c.source for c in answer.citations] == [f"learned:{rid}"]
    assert answer.learning.used == [f"learned:{rid}"]
    assert f"learned:{rid} served from answer memory" in answer.route.reason
    note = next(n for n in answer.notes if n.startswith("answered from answer memory"))
    assert f"record {rid}" in note and "close to the recorded one" in note
    # With the memory step off, the same run escalates to the supervisor.
    off = make_graph(learning={"trust_memory_above": None})
    _direct(off, monkeypatch)
    fake_openai.script(PLAN, f"{REMEMBERED} [tenancy]")
    assert (await _ask(off, QUESTION)).escalated


async def test_a_question_that_asks_something_else_in_the_same_words_is_not_served(
    make_graph: Callable[..., Any],
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
    monkeypatch: Any,
) -> None:
    # Every similarity bar open: only the question guard stands between the near miss and
    # the wrong remembered answer, and the specialist copies that answer.
    graph = make_graph(learning={"trust_memory_above": -1.0, "answer_memory_above": -1.0})
    _direct(graph, monkeypatch)
    rid = await kept(graph, QUESTION, REMEMBERED)
    fake_ollama.respond_with(MODEL, _copies_learned)
    fake_openai.script(PLAN, "Buildings insurance, which the landlord buys. [tenancy]")
    before = len(fake_openai.completions())
    answer = await _ask(graph, NEAR_MISS)
    assert len(fake_openai.completions()) > before and answer.escalated
    assert "Buildings insurance" in answer.text and REMEMBERED not in answer.text
    assert f"learned:{rid} served" not in answer.route.reason
    assert not any("answer memory" in n or "learned memory" in n for n in answer.notes)
    memory = answer.worker_results[0].memory
    assert memory is not None and "'building'" in memory.asks_else


async def test_a_remembered_answer_the_curated_corpus_contradicts_is_not_served(
    make_graph: Callable[..., Any],
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
    monkeypatch: Any,
) -> None:
    question = "How quickly does Brightwater Lettings return deposits?"
    graph = make_graph(learning={"trust_memory_above": -1.0, "answer_memory_above": -1.0})
    _direct(graph, monkeypatch)
    await kept(graph, question, "Brightwater Lettings returns deposits within 30 days.")
    fake_ollama.respond_with(MODEL, lambda request: json.dumps(ESCALATE))
    fake_openai.script(PLAN, "Within 14 days. [tenancy]")
    answer = await _ask(graph, question)
    assert answer.escalated and "14 days" in answer.text
    assert not any(n.startswith("answered from answer memory") for n in answer.notes)


def test_near_miss_questions_ask_something_else_paraphrases_do_not() -> None:
    recorded = "Which organ in the body produces insulin?"
    said = "The pancreas produces insulin."
    assert "'bile'" in asks_else("Which organ in the body produces bile?", recorded, said)
    assert "'EPC'" in asks_else(
        "In housing, what does EPC stand for?", "In housing, what does HMO stand for?", ""
    )
    assert asks_else("Insulin is produced by which organ of the body?", recorded, said) == ""
    # A paraphrase that rewords wholesale shares few words: no swap to see.
    assert asks_else("What part of me releases the hormone insulin?", recorded, said) == ""
    # The guard is lexical: a one-word synonym looks like a swap, and the question goes to
    # the supervisor (a supervisor request, never a wrong answer).
    assert "'makes'" in asks_else("Which organ of the body makes insulin?", recorded, said)
    assert asks_else(recorded, recorded, said) == ""
    etf = "What does ETF stand for in investing?"
    paraphrase = "My friend invests in 'ETFs'. What is the full name of that kind of fund?"
    assert asks_else(paraphrase, etf, "") == ""  # "ETFs" is "ETF"
    # A word the remembered answer holds is no new ask.
    assert asks_else("Does the pancreas in the body produce insulin?", recorded, said) == ""


async def test_a_right_answer_citing_the_wrong_passage_gets_the_remembered_answer(
    make_graph: Callable[..., Any],
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
    monkeypatch: Any,
) -> None:
    """The bundled 0.5B's APR case: it says "Annual Percentage Rate", unsure, citing a
    curated passage; the learned passage it retrieved holds exactly that."""
    graph = make_graph(learning={"trust_memory_above": -1.0, "answer_memory_above": 0.99})
    _direct(graph, monkeypatch)
    rid = await kept(
        graph, "What does APR stand for on a loan?", "APR stands for Annual Percentage Rate."
    )

    def respond(request: dict[str, Any]) -> str:
        reply = {"answer": "Annual Percentage Rate.", "confidence": 0.2, "citations": ["S1"]}
        return json.dumps({**reply, "needs_escalation": False})

    fake_ollama.respond_with(MODEL, respond)
    before = len(fake_openai.completions())
    answer = await _ask(graph, "Lenders quote an APR on loans. What is the full term?")
    assert len(fake_openai.completions()) == before and not answer.escalated
    assert answer.text == "APR stands for Annual Percentage Rate."
    assert [c.source for c in answer.citations] == [f"learned:{rid}"]
    assert any("the specialist's answer rests on it" in n for n in answer.notes)
    # An answer the passage does not hold is no agreement: the question bar (0.99) decides.
    fake_ollama.respond_with(
        MODEL,
        lambda request: json.dumps(
            {"answer": "Average Payment Ratio.", "confidence": 0.2, "citations": ["S1"]}
        ),
    )
    fake_openai.script(PLAN, "Annual Percentage Rate. [tenancy]")
    assert (await _ask(graph, "Lenders quote an APR on loans. What is the full term?")).escalated
