"""Answers grounded in approved answer memory stay local; unrouted answers teach a specialist.

``[learning] trust_memory_above`` (graphs/cascade.py ``trusted_memory``), the route node's
answer-memory shortcut and ``unrouted`` records (graphs/learning/engine.py), against the fakes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from tandem.agents.router import RouteDecision
from tandem.graphs.cascade import trusted_memory
from tandem.graphs.learning import Record
from tandem.workers.records import AnswerSignals, MemoryGrounding, WorkerResult
from tandem.workers.testing import FakeOllama, FakeOpenAI

from .test_learning import MODEL, PLAN, QUESTION

LEARNED = "Contents insurance, which the tenant buys, covers a tenant's own furniture."
"""The supervisor's earlier answer to QUESTION (a kept learning record)."""


def _cites_learned(answer: str, confidence: float) -> Callable[[dict[str, Any]], str]:
    """A worker that answers ``answer`` citing the learned passage, unsure of itself (its
    self-reported confidence is below the cascade's bar) but not asking to escalate."""

    def respond(request: dict[str, Any]) -> str:
        prompt = request["messages"][-1]["content"]
        found = re.search(r'<passage id="(S\d+)" source="learned:', prompt)
        return json.dumps(
            {
                "answer": answer,
                "confidence": confidence,
                "citations": [found.group(1)] if found else [],
                "needs_escalation": False,
            }
        )

    return respond


async def kept(graph: Any, question: str = QUESTION, answer: str = LEARNED) -> int:
    """Record ``answer`` to ``question`` for 'tenancy' and keep it as answer memory."""
    rt = graph.runtime
    record = rt.learning.store.add(
        Record(
            worker="tenancy",
            kind="escalated",
            question=question,
            instruction=question,
            answer=answer,
            source_model="openai/fake-large",
        )
    )
    await rt.learning.keep([record.id])
    return int(record.id)


async def _ask(graph: Any, query: str = QUESTION) -> Any:
    return (await graph.ainvoke({"query": query}))["answer"]


# -- the rule on its own ----------------------------------------------------------------------
def _result(**memory: Any) -> WorkerResult:
    base: dict[str, Any] = {
        "source": "learned:4",
        "record": 4,
        "similarity": 0.82,
        "spans": 1,
        "overlap": 0.9,
    }
    return WorkerResult(
        worker="tenancy",
        instruction="q",
        status="ok",
        answer="a",
        signals=AnswerSignals(),
        memory=MemoryGrounding(**{**base, **memory}),
    )


def test_trusted_memory_needs_similarity_support_and_no_conflict() -> None:
    assert trusted_memory(_result(), 0.6) == (
        "answered from learned memory (record 4, similarity 0.82)"
    )
    assert trusted_memory(_result(), None) == ""  # off
    assert trusted_memory(_result(similarity=0.59), 0.6) == ""
    assert trusted_memory(_result(unsupported=["amount VC 120"]), 0.6) == ""
    assert trusted_memory(_result(overlap=0.3), 0.6) == ""
    assert trusted_memory(_result(conflict=True), 0.6) == ""
    assert trusted_memory(_result(asks_else="it names 'EPC'"), 0.6) == ""  # a near miss
    said = _result().model_copy(update={"signals": AnswerSignals(not_covered=True)})
    assert trusted_memory(said, 0.6) == ""
    echo = _result().model_copy(update={"signals": AnswerSignals(question_overlap=1.0)})
    assert trusted_memory(echo, 0.6) == ""
    assert trusted_memory(_result().model_copy(update={"memory": None}), 0.6) == ""


# -- through the graph --------------------------------------------------------------------
async def test_an_answer_grounded_in_a_learned_passage_stays_local_and_says_why(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.respond_with(
        MODEL, _cites_learned("Contents insurance, bought by the tenant.", 0.3)
    )
    # Without the rule the unsure answer escalates (the cascade's bar is 0.5) …
    strict = make_graph(learning={"trust_memory_above": None})
    rid = await kept(strict)
    fake_openai.script(PLAN, "Contents insurance. [tenancy]")
    assert (await _ask(strict)).escalated
    # … with it, the learned passage the answer rests on keeps it local, and it says so.
    graph = make_graph(learning={"trust_memory_above": 0.3})
    before = len(fake_openai.completions())
    answer = await _ask(graph)
    assert len(fake_openai.completions()) == before and not answer.escalated
    assert answer.learning.used == [f"learned:{rid}"]
    note = next(n for n in answer.notes if "answered from learned memory" in n)
    assert f"record {rid}, similarity " in note and "kept local although" in note
    result = answer.worker_results[0]
    assert result.memory is not None and result.memory.record == rid
    assert f"similarity {result.memory.similarity:.2f}" in note
    assert result.memory.similarity >= 0.3 and result.memory.unsupported == []


async def test_an_answer_not_backed_by_the_learned_passage_still_escalates(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    # (answer_memory_above None: the memory step serves the remembered answer only when
    # the specialist's answer rests on it — tests/test_learning_memory_answer.py)
    graph = make_graph(learning={"trust_memory_above": 0.3, "answer_memory_above": None})
    await kept(graph)
    # It cites the learned passage but states a figure the passage does not hold.
    fake_ollama.respond_with(MODEL, _cites_learned("Contents insurance costs VC 120 a year.", 0.3))
    fake_openai.script(PLAN, "Contents insurance. [tenancy]")
    answer = await _ask(graph)
    assert answer.escalated
    assert not any("answered from learned memory" in n for n in answer.notes)
    memory = answer.worker_results[0].memory
    assert memory is not None and memory.unsupported == ["amount VC 120"]


async def test_an_answer_that_only_echoes_the_question_still_escalates(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    question = "What does HMO stand for in a tenancy?"
    graph = make_graph(learning={"trust_memory_above": -1.0, "answer_memory_above": None})
    await kept(graph, question, "HMO stands for House in Multiple Occupation.")
    # It cites the learned passage and every word of it is there, but it only says "HMO".
    fake_ollama.respond_with(MODEL, _cites_learned("HMO.", 0.3))
    fake_openai.script(PLAN, "House in Multiple Occupation. [tenancy]")
    answer = await _ask(graph, question)
    assert answer.escalated
    assert not any("answered from learned memory" in n for n in answer.notes)
    memory = answer.worker_results[0].memory
    assert memory is not None and memory.overlap == 1.0  # backed, yet only the question's word
    # With the memory step's question bar, the same question gets the remembered answer
    # itself, not the echo, and no supervisor request.
    served = make_graph(learning={"trust_memory_above": -1.0})
    before = len(fake_openai.completions())
    again = await _ask(served, question)
    assert len(fake_openai.completions()) == before and not again.escalated
    assert again.text == "HMO stands for House in Multiple Occupation."


async def test_a_learned_passage_that_conflicts_with_the_corpus_is_not_trusted(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    question = "How quickly does Brightwater Lettings return deposits?"
    graph = make_graph(learning={"trust_memory_above": -1.0})
    await kept(graph, question, "Brightwater Lettings returns deposits within 30 days.")
    fake_ollama.respond_with(MODEL, _cites_learned("Within 30 days.", 0.3))
    fake_openai.script(PLAN, "Within 14 days. [tenancy]")
    answer = await _ask(graph, question)
    assert answer.escalated  # the cascade decided, not the memory
    assert not any("answered from learned memory" in n for n in answer.notes)
    first = answer.worker_results[0]
    assert first.memory is not None and first.memory.conflict
    assert "curated source is the reviewed one" in first.answer  # the conflict is still said


# -- answers the supervisor gave alone ------------------------------------------------------------
def _route_alone(rt: Any, monkeypatch: pytest.MonkeyPatch, owner: str | None) -> list[str]:
    """The router finds no specialist for a question; with the answer appended it names
    ``owner`` (``None``: still no one). Returns the texts it was asked about."""
    asked: list[str] = []

    async def decide(query: str, calls: Any = None) -> tuple[RouteDecision, list[float]]:
        asked.append(query)
        vector = (await rt.router.embedder.embed([query])).vectors[0]
        if "\n" in query and owner is not None:
            probs = {"tenancy": 0.02, "finance": 0.02, "health": 0.02, owner: 0.3}
            return RouteDecision(kind="supervisor", probabilities=probs), vector
        return RouteDecision(kind="supervisor", reason="no specialist fits"), vector

    monkeypatch.setattr(rt.router, "decide", decide)
    return asked


async def test_an_answer_the_supervisor_gave_alone_teaches_the_specialist_it_belongs_to(
    make_graph: Callable[..., Any],
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph = make_graph(learning={"memory": "auto", "trust_memory_above": 0.2})
    rt = graph.runtime
    asked = _route_alone(rt, monkeypatch, "tenancy")
    fake_openai.script(f"{LEARNED} [tenancy]")
    first = await _ask(graph)
    assert first.route.kind == "supervisor" and first.ledger.totals.supervisor_calls == 1
    assert asked[-1] == f"{QUESTION}\n{LEARNED}"  # the [tenancy] tag is not evidence
    (rid,) = first.learning.kept
    record = rt.learning.store.get(rid)
    assert record is not None and (record.worker, record.kind) == ("tenancy", "unrouted")
    assert record.checks_passed and record.answer == f"{LEARNED} [tenancy]"
    assert record.passages  # what the specialist would have seen, for exports
    routes = [json.loads(line) for line in rt.learning.routing_path.read_text().splitlines()]
    assert routes == [{"question": QUESTION, "expected_workers": ["tenancy"], "facts": []}]
    # Next time the router still finds no one, but tenancy's answer memory holds the answer.
    fake_ollama.respond_with(
        MODEL, _cites_learned("Contents insurance, bought by the tenant.", 0.9)
    )
    before = len(fake_openai.completions())
    again = await _ask(graph)
    assert len(fake_openai.completions()) == before
    assert again.route.kind == "direct" and again.route.workers == ["tenancy"]
    assert again.route.reason.startswith(f"answer memory: learned:{rid} of 'tenancy'")
    assert again.learning.used == [f"learned:{rid}"] and not again.escalated


async def test_an_answer_no_specialist_clearly_owns_is_not_recorded(
    make_graph: Callable[..., Any],
    fake_openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph = make_graph(learning={"memory": "auto"})
    _route_alone(graph.runtime, monkeypatch, None)
    fake_openai.script("Paris is the capital of France.")
    answer = await _ask(graph, "What is the capital of France?")
    assert answer.learning.records == [] and answer.learning.routing == []
    off = make_graph(learning={"memory": "auto", "unrouted": False})
    _route_alone(off.runtime, monkeypatch, "tenancy")
    fake_openai.script(LEARNED)
    assert (await _ask(off)).learning.records == []


async def test_a_planned_attempt_under_the_cascades_threshold_is_recorded(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    """The cascade escalated the direct answer; the planned attempt, just as unsure by the
    same threshold (though above ``min_confidence``), does not make the run "answered"."""
    import dataclasses

    graph = make_graph()
    rt = graph.runtime
    rt.cascade["tenancy"] = dataclasses.replace(rt.cascade["tenancy"], threshold=0.999)

    def respond(request: dict[str, Any]) -> str:
        reply = {"answer": "The landlord.", "confidence": 0.9, "citations": ["S1"]}
        return json.dumps({**reply, "needs_escalation": False})

    fake_ollama.respond_with(MODEL, respond)
    fake_openai.script(PLAN, "Contents insurance covers it. [tenancy]")
    answer = await _ask(graph)
    assert answer.escalated
    attempts = [r for r in answer.worker_results if r.worker == "tenancy"]
    assert len(attempts) == 2 and all(r.p_correct is not None for r in attempts)
    assert all(0.5 <= (r.p_correct or 0) < 0.999 for r in attempts), attempts
    (rid,) = answer.learning.records
    record = rt.learning.store.get(rid)
    assert record is not None and record.kind == "escalated"


def test_a_bare_worker_tag_is_not_a_substantive_answer() -> None:
    from tandem.graphs.learning import LearningSettings
    from tandem.graphs.learning.recorder import Part, checks

    state: dict[str, Any] = {"notes": [], "calls": [], "route": None}

    def substantive(text: str) -> bool:
        part = Part("finance", "planned", "What does HMO stand for?", text, None)
        return checks(part, state, LearningSettings(), [])[0]["substantive"]

    assert not substantive("HMO [finance]")  # one word and a tag
    assert substantive("House in Multiple Occupation [tenancy]")


async def test_a_structured_answers_conclusion_is_what_the_supervisor_supplied(
    make_graph: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    """With the structured synthesis (the local supervisor's default) the final text is the
    specialists' own answers and then the supervisor's conclusion: only that is learned."""
    from .test_learning import ESCALATE

    graph = make_graph(planner={"synthesis": "structured"})
    fake_ollama.script(MODEL, ESCALATE, ESCALATE)
    fake_openai.script(PLAN, LEARNED)
    answer = await _ask(graph)
    assert answer.escalated and answer.text.endswith(LEARNED)
    assert answer.text != LEARNED  # the specialist's own paragraph comes first
    (rid,) = answer.learning.records
    record = graph.runtime.learning.store.get(rid)
    assert record is not None and record.kind == "escalated"
    assert record.answer == LEARNED and record.checks_passed, record.checks


def _unsure_router(rt: Any, monkeypatch: pytest.MonkeyPatch, worker: str, best_match: bool) -> None:
    """The router sends every question to ``worker`` alone: below its threshold (the best
    weak match) with ``best_match``, else confidently."""

    async def decide(query: str, calls: Any = None) -> tuple[RouteDecision, list[float]]:
        vector = (await rt.router.embedder.embed([query])).vectors[0]
        probs = {"tenancy": 0.05, "finance": 0.05, "health": 0.05, worker: 0.9}
        if best_match:
            probs[worker] = 0.15
        return RouteDecision(
            kind="direct",
            workers=[worker],
            probabilities=probs,
            best_match=best_match,
            reason=f"one specialist: {worker}" + (" (best match)" if best_match else ""),
        ), vector

    monkeypatch.setattr(rt.router, "decide", decide)


async def test_an_unsure_route_goes_to_the_specialist_whose_memory_holds_the_answer(
    make_graph: Callable[..., Any],
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph = make_graph(learning={"memory": "auto", "trust_memory_above": 0.2})
    rid = await kept(graph)
    _unsure_router(graph.runtime, monkeypatch, "finance", best_match=True)
    fake_ollama.respond_with(
        MODEL, _cites_learned("Contents insurance, bought by the tenant.", 0.9)
    )
    before = len(fake_openai.completions())
    answer = await _ask(graph)
    assert len(fake_openai.completions()) == before  # answered locally, from tenancy's memory
    assert answer.route.kind == "direct" and answer.route.workers == ["tenancy"]
    assert answer.route.reason.startswith(f"answer memory: learned:{rid} of 'tenancy'")
    assert "(one specialist: finance (best match))" in answer.route.reason
    assert answer.learning.used == [f"learned:{rid}"] and not answer.escalated


async def test_a_confident_route_is_not_redirected_by_memory(
    make_graph: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph = make_graph(learning={"memory": "auto", "trust_memory_above": 0.2})
    await kept(graph)
    _unsure_router(graph.runtime, monkeypatch, "finance", best_match=False)
    answer = await _ask(graph)
    assert answer.route.workers == ["finance"]
    assert not answer.route.reason.startswith("answer memory")


def test_an_answer_about_the_passages_is_not_kept_as_a_passage_of_its_own() -> None:
    from tandem.graphs.learning import LearningSettings
    from tandem.graphs.learning.recorder import Part, checks

    state: dict[str, Any] = {"notes": [], "calls": [], "route": None}

    def self_contained(text: str) -> bool:
        part = Part("tenancy", "planned", "Which insurance covers my furniture?", text, None)
        return checks(part, state, LearningSettings(), [])[0]["self_contained"]

    assert not self_contained("The passage in states that the landlord insures the building.")
    assert not self_contained("According to the passages, the landlord insures it.")
    assert self_contained("Contents insurance, bought by the tenant, covers your furniture.")
    assert self_contained("The tenant's own contents insurance covers it; see the passage.")
