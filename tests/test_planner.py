"""Plans the router already knows, synthesis that covers every part, citations the kept
answers rest on (issue 19, items 1 and 2)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tandem.agents.coverage import (
    is_answer,
    key_facts,
    missing_parts,
    numbers,
    supporting,
    with_context,
)
from tandem.agents.planner import PlannerSettings, router_plan, synthesis_style
from tandem.agents.router import RouteDecision, RoutePart, Router, RouterSettings
from tandem.agents.router._learned import explain
from tandem.agents.router._model import Choice, Scored, Thresholds
from tandem.graphs.testing import ScriptedSupervisor
from tandem.workers.backends import BackendSettings, make_backend
from tandem.workers.builtin import specs as builtin_specs
from tandem.workers.records import WorkerResult
from tandem.workers.testing import FakeOllama, FakeOpenAI, grounded_reply

CROSS_Q = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)
PARTS = [
    "My landlord says my rent is going up by 8% — is that allowed?",
    "And how much of my rent can I claim back through the Renters' Tax Credit?",
]
AUTO = {"planner": {"mode": "auto"}}


def _plan_route(
    *parts: RoutePart, workers: list[str] | None = None, split: bool = True
) -> RouteDecision:
    chosen = workers or list(dict.fromkeys(p.worker for p in parts if p.worker))
    return RouteDecision(
        kind="plan", workers=chosen, reason="multi-part", parts=list(parts), split=split
    )


def _result(worker: str, instruction: str, answer: str, **kw: Any) -> WorkerResult:
    return WorkerResult(worker=worker, instruction=instruction, status="ok", answer=answer, **kw)


# -- the router's parts ----------------------------------------------------------------


def test_router_plan_is_one_subtask_per_part_in_the_parts_own_words() -> None:
    route = _plan_route(
        RoutePart(text=PARTS[0], worker="tenancy", probability=0.97),
        RoutePart(text=PARTS[1], worker="finance", probability=0.99),
    )
    plan = router_plan(route, {"tenancy", "finance", "health"}, PlannerSettings(), 4)
    assert plan is not None and plan.source == "router"
    assert [(s.worker, s.instruction) for s in plan.subtasks] == [
        ("tenancy", PARTS[0]),
        ("finance", PARTS[1]),
    ]


async def test_the_learned_routers_split_of_the_demo_question_is_the_plan(
    tmp_path: Path,
) -> None:
    router = Router(
        builtin_specs(),
        make_backend("embedded:minilm", BackendSettings()),
        RouterSettings(),
        cache_dir=tmp_path,
    )
    decision, _ = await router.decide(CROSS_Q)
    assert decision.kind == "plan" and decision.split
    plan = router_plan(decision, decision.workers, PlannerSettings(), 4)
    assert plan is not None and plan.source == "router"
    # One subtask per specialist, each with its own part of the question: nothing dropped.
    assert [s.worker for s in plan.subtasks] == ["tenancy", "finance"]
    assert "8%" in plan.subtasks[0].instruction
    assert "Tax Credit" in plan.subtasks[1].instruction


# "I'm moving out soon: what's …" reads as scene-setting to the clause rule, so the router
# matches only the finance clause; tenancy is chosen by the whole question's probability.
MOVING_Q = (
    "I'm moving out soon: what's the legal deadline for my landlord to return my deposit, "
    "and what interest would the money earn in a Kestrel Bank Saver Plus account?"
)


async def test_a_chosen_specialist_the_split_missed_gets_its_best_clause(
    tmp_path: Path,
) -> None:
    router = Router(
        builtin_specs(),
        make_backend("embedded:minilm", BackendSettings()),
        RouterSettings(),
        cache_dir=tmp_path,
    )
    decision, _ = await router.decide(MOVING_Q)
    assert decision.kind == "plan" and not decision.split and decision.filled
    by_worker = {p.worker: p for p in decision.parts}
    assert set(by_worker) == {"tenancy", "finance"} == set(decision.workers)
    assert by_worker["tenancy"].by == "best clause" and "deposit" in by_worker["tenancy"].text
    assert "Kestrel" not in by_worker["tenancy"].text
    assert by_worker["finance"].by == "clause" and "Kestrel" in by_worker["finance"].text
    assert "tenancy (its best clause)" in decision.reason
    plan = router_plan(decision, decision.workers, PlannerSettings(), 4)
    assert plan is not None and plan.source == "router"
    assert "tenancy (its best clause)" in plan.rationale


def test_a_filled_split_is_the_plan_and_a_whole_question_part_is_asked_whole() -> None:
    route = RouteDecision(
        kind="plan",
        workers=["tenancy", "finance"],
        reason="multi-label",
        parts=[
            RoutePart(text=PARTS[1], worker="finance", probability=0.95),
            RoutePart(text=CROSS_Q, worker="tenancy", probability=0.9, by="question"),
        ],
        filled=True,
    )
    plan = router_plan(route, {"tenancy", "finance"}, PlannerSettings(), 4)
    assert plan is not None
    assert [(s.worker, s.instruction) for s in plan.subtasks] == [
        ("finance", PARTS[1]),
        ("tenancy", CROSS_Q),
    ]
    assert "tenancy (the whole question)" in plan.rationale
    # mode = "supervisor" still plans with the supervisor.
    assert router_plan(route, {"tenancy", "finance"}, PlannerSettings(mode="supervisor"), 4) is None


async def test_a_split_that_missed_a_specialist_is_planned_locally_and_asks_both(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    # The learned router on the bundled MiniLM (the suite's default is the centroid router
    # on the fake's hashed embeddings).
    graph = make_graph(**AUTO, router={"kind": "learned", "embed_model": "embedded:minilm"})
    answer = (await graph.ainvoke({"query": MOVING_Q}))["answer"]

    assert answer.route.kind == "plan" and answer.route.filled
    assert "plan built from the router's parts (no planning call)" in answer.route.reason
    # No planning call: the one large-model call is the synthesis.
    assert [c.purpose for c in answer.ledger.calls if c.role == "supervisor"] == ["synthesize"]
    assert all("response_format" not in b for b in fake_openai.completions())
    assert answer.ledger.planned_by == "router"
    assert "tenancy (its best clause)" in answer.ledger.plan_rationale
    # Both specialists were asked, each its own part of the question.
    tasks = [
        r["messages"][-1]["content"].splitlines()[0]
        for r in fake_ollama.chat_requests()
        if r["messages"][-1]["content"].startswith("Task: ")
    ]
    assert len(tasks) == 2
    assert any("deposit" in t and "Kestrel" not in t for t in tasks)
    assert any("Kestrel" in t and "deposit" not in t for t in tasks)
    asked = {r.worker: r.instruction for r in answer.worker_results}
    assert set(asked) == {"tenancy", "finance"}
    assert "deposit" in asked["tenancy"] and "Kestrel" not in asked["tenancy"]
    assert "Kestrel" in asked["finance"] and "deposit" not in asked["finance"]


@pytest.mark.parametrize(
    ("route", "settings", "why"),
    [
        (
            _plan_route(
                RoutePart(text=PARTS[0], worker="tenancy", probability=0.9),
                RoutePart(text=PARTS[1], worker=None, probability=0.0),
                workers=["tenancy", "finance"],
            ),
            PlannerSettings(),
            "a part without a specialist",
        ),
        (
            _plan_route(
                RoutePart(text=PARTS[0], worker="tenancy", probability=0.9),
                RoutePart(text=PARTS[1], worker="finance", probability=0.3),
            ),
            PlannerSettings(min_part_probability=0.5),
            "an unsure part (below [planner] min_part_probability)",
        ),
        (
            _plan_route(
                RoutePart(text=PARTS[0], worker="tenancy", probability=0.9),
                RoutePart(text=PARTS[1], worker="finance", probability=0.9),
                split=False,
            ),
            PlannerSettings(),
            "the router did not decide the plan by its parts",
        ),
        (
            _plan_route(
                RoutePart(text=PARTS[0], worker="tenancy", probability=0.9),
                RoutePart(text=PARTS[1], worker="tenancy", probability=0.9),
                workers=["tenancy", "finance"],
            ),
            PlannerSettings(),
            "a chosen specialist without a part",
        ),
        (
            _plan_route(
                RoutePart(text=PARTS[0], worker="tenancy", probability=0.9),
                RoutePart(text=PARTS[1], worker="astrology", probability=0.9),
            ),
            PlannerSettings(),
            "an unknown worker",
        ),
        (
            _plan_route(
                RoutePart(text=PARTS[0], worker="tenancy", probability=0.9),
                RoutePart(text=PARTS[1], worker="finance", probability=0.9),
            ),
            PlannerSettings(mode="supervisor"),
            "mode = supervisor",
        ),
        (
            RouteDecision(kind="plan", workers=["tenancy", "finance"], reason="close scores"),
            PlannerSettings(),
            "no parts",
        ),
    ],
)
def test_the_supervisor_plans_when_the_split_is_unclear(
    route: RouteDecision, settings: PlannerSettings, why: str
) -> None:
    assert router_plan(route, {"tenancy", "finance"}, settings, 4) is None, why


async def test_a_confident_split_skips_the_planning_call(
    make_graph: Any, fake_openai: FakeOpenAI
) -> None:
    answer = (await make_graph(**AUTO).ainvoke({"query": CROSS_Q}))["answer"]

    assert answer.route.kind == "plan" and [p.worker for p in answer.route.parts] == [
        "tenancy",
        "finance",
    ]
    assert "plan built from the router's parts (no planning call)" in answer.route.reason
    # One large-model call: the synthesis. No planning call, no JSON schema sent.
    bodies = fake_openai.completions()
    assert len(bodies) == 1 and "response_format" not in bodies[0]
    assert [c.purpose for c in answer.ledger.calls if c.role == "supervisor"] == ["synthesize"]
    assert answer.ledger.planned_by == "router" and answer.ledger.totals.router_plans == 1
    assert sorted(r.instruction for r in answer.worker_results) == sorted(PARTS)


async def test_a_router_part_is_asked_without_the_rest_of_the_question(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    await make_graph(**AUTO).ainvoke({"query": CROSS_Q})
    prompts = [r["messages"][-1]["content"] for r in fake_ollama.chat_requests()]
    tasks = sorted(p for p in prompts if p.startswith("Task: "))
    # Each specialist sees its own part only: the other part beside it led the 0.5B
    # finance model to answer "8%" (the tenancy part's number).
    assert [t.splitlines()[0] for t in tasks] == sorted(f"Task: {p}" for p in PARTS)
    assert not any("the user's full question" in t for t in tasks)


async def test_mode_supervisor_keeps_the_planning_call(
    make_graph: Any, fake_openai: FakeOpenAI
) -> None:
    answer = (await make_graph().ainvoke({"query": CROSS_Q}))["answer"]  # the suite's default

    purposes = [c.purpose for c in answer.ledger.calls if c.role == "supervisor"]
    assert purposes == ["plan", "synthesize"]
    assert answer.ledger.planned_by == "supervisor" and answer.ledger.totals.supervisor_plans == 1
    assert "no planning call" not in answer.route.reason


# -- coverage ----------------------------------------------------------------------------

TENANCY = "No. Rent may rise at most once every 12 months and by no more than 5.5%."
FINANCE = "The credit is 15% of the rent paid, capped at VC 1,000 a year."


def test_key_facts_are_the_numbers_of_the_short_answer() -> None:
    assert key_facts(TENANCY, PARTS[0]) == ["5.5", "12"]  # "8%" is the question's own number
    assert key_facts(FINANCE) == ["1000", "15"]
    assert numbers("VC 1,000 and 5.50% on 3.4.2026") >= {"1000", "5.5"}
    assert key_facts("Yes, a cat is allowed with written consent.", "Can I keep a cat?") == [
        "allowed",
        "consent",
        "written",
    ]


def test_missing_parts_names_the_part_the_text_dropped() -> None:
    parts = [_result("tenancy", PARTS[0], TENANCY), _result("finance", PARTS[1], FINANCE)]
    only_tax = "You can claim 15% of your rent back, up to VC 1,000 a year [finance]."
    assert [r.worker for r in missing_parts(only_tax, parts)] == ["tenancy"]
    both = only_tax + " A rise is allowed once a year, at most 5.5% (12 months apart) [tenancy]."
    assert missing_parts(both, parts) == []
    # A part the worker could not answer is not expected in the text.
    unsure = _result("health", "x?", "not covered", needs_escalation=True)
    assert missing_parts(only_tax, [unsure]) == []


CREDIT_PASSAGE = (
    "Tenants who rent their main home privately can claim the Renters' Tax Credit. "
    "The credit is 15% of the rent paid in the tax year, capped at VC 1,000 per person per "
    "year. A deposit of 15% is not rent."
)


def test_a_bare_figure_gets_the_passage_sentence_that_states_it() -> None:
    bare = _result("finance", PARTS[1], "15%")
    assert with_context(bare, ["Deposits: five weeks.", CREDIT_PASSAGE]).answer == (
        "15%: The credit is 15% of the rent paid in the tax year, capped at VC 1,000 per "
        "person per year."
    )
    # A figure no sentence states, a sentence answer, or the question's own number (an
    # echo, not an answer) stays as it is.
    assert with_context(_result("finance", PARTS[1], "18%"), [CREDIT_PASSAGE]).answer == "18%"
    said = _result("finance", PARTS[1], "The credit is 15% of the rent, at most VC 1,000.")
    assert with_context(said, [CREDIT_PASSAGE]) == said
    echo = _result("tenancy", PARTS[0], "8%")
    assert with_context(echo, ["A rise of 8% needs notice."]).answer == "8%"


async def test_a_structured_answer_shows_a_bare_figure_with_its_sentence(
    make_graph: Any, fake_ollama: FakeOllama
) -> None:
    def terse(body: dict[str, Any]) -> str:
        reply = json.loads(grounded_reply(body))
        if "Tax Credit" in body["messages"][-1]["content"].split("\n", 1)[0]:
            reply["answer"] = "15%"
        return json.dumps(reply)

    fake_ollama.respond_with("qwen2.5:1.5b", terse)
    sup = ScriptedSupervisor("So the credit helps.", where="local")
    graph = make_graph(supervisor_llm=sup, planner={"mode": "auto", "synthesis": "structured"})
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]

    finance = next(p for p in answer.text.split("\n\n") if p.endswith("[finance]"))
    assert finance.startswith("15%: ") and "VC 1,000" in finance
    # The specialist's own result is kept as it answered.
    assert any(r.answer == "15%" for r in answer.worker_results)


async def test_a_dropped_part_is_added_locally(make_graph: Any) -> None:
    sup = ScriptedSupervisor("Only one part is answered here.", where="local")
    graph = make_graph(supervisor_llm=sup, planner={"mode": "auto", "repair": "append"})
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]

    assert len(sup.calls) == 1  # the synthesis; no re-ask
    assert answer.text.startswith("Only one part is answered here.\n\n")
    for r in answer.worker_results:
        assert r.answer in answer.text and f"[{r.worker}]" in answer.text
    assert any("the synthesis left out" in n for n in answer.notes)


async def test_a_remote_supervisor_is_asked_once_more_for_the_part_it_dropped(
    make_graph: Any, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script("qwen2.5:1.5b", json.dumps(_reply(TENANCY)), json.dumps(_reply(FINANCE)))
    sup = ScriptedSupervisor(
        "You can claim 15% back, up to VC 1,000 [finance].",
        "A rise is capped at 5.5% once every 12 months [tenancy]; you can claim 15% back, "
        "up to VC 1,000 [finance].",
    )
    graph = make_graph(supervisor_llm=sup, planner={"mode": "auto", "repair": "auto"})
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]

    purposes = [c.purpose for c in answer.ledger.calls if c.role == "supervisor"]
    assert purposes == ["synthesize", "resynthesize"]
    again = sup.calls[1][-1]["content"]
    assert "left out part 1 (tenancy)" in again or "left out part 2 (tenancy)" in again
    assert answer.text.startswith("A rise is capped at 5.5%")
    assert "\n\n" not in answer.text  # nothing had to be appended


async def test_structured_synthesis_shows_every_part_and_a_checked_conclusion(
    make_graph: Any,
) -> None:
    sup = ScriptedSupervisor("So the rise is too high, and the credit still helps.", where="local")
    graph = make_graph(supervisor_llm=sup, planner={"mode": "auto", "synthesis": "structured"})
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]

    paragraphs = answer.text.split("\n\n")
    assert len(paragraphs) == 3 and paragraphs[-1].startswith("So the rise is too high")
    assert {p.rsplit("[", 1)[-1].rstrip("]") for p in paragraphs[:2]} == {"tenancy", "finance"}
    assert [c.purpose for c in answer.ledger.calls if c.role == "supervisor"] == ["conclude"]
    conclude = sup.calls[0][-1]["content"]
    assert 'part="1"' in conclude and 'part="2"' in conclude


async def test_a_conclusion_with_an_invented_number_is_dropped(make_graph: Any) -> None:
    sup = ScriptedSupervisor("In total you save VC 4,321 a year.", where="local")
    graph = make_graph(supervisor_llm=sup, planner={"mode": "auto", "synthesis": "structured"})
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]

    assert "4,321" not in answer.text and len(answer.text.split("\n\n")) == 2
    assert any("dropped the supervisor's conclusion" in n for n in answer.notes)


def test_synthesis_style_auto_is_structured_for_the_embedded_engine() -> None:
    auto = PlannerSettings()
    assert synthesis_style(auto, "embedded:qwen2.5-coder-1.5b") == "structured"
    assert synthesis_style(auto, "openai/gpt-4o-mini") == "prose"
    assert synthesis_style(PlannerSettings(synthesis="prose"), "embedded:x") == "prose"


# -- citations ---------------------------------------------------------------------------


def _reply(answer: str, citations: tuple[str, ...] = ("S1",)) -> dict[str, Any]:
    return {
        "answer": answer,
        "confidence": 0.9,
        "citations": list(citations),
        "needs_escalation": False,
    }


def test_supporting_keeps_the_passages_that_state_the_facts() -> None:
    passages = [
        "Deposits: at most five weeks' rent.",
        "The Renters' Tax Credit is 15% of the rent paid, up to VC 1,000 a year.",
        "Rent-a-Room Relief: VC 7,500 a year tax-free.",
    ]
    assert supporting(FINANCE, passages) == [1]
    # No fact in any passage (a paraphrase): the one sharing most words is kept.
    assert supporting("Deposits are limited to five weeks of rent.", passages) == [0]
    assert supporting("Nothing relevant.", []) == []


async def test_a_worker_citing_every_passage_keeps_only_those_with_its_facts(
    make_graph: Any, fake_ollama: FakeOllama
) -> None:
    def cite_all(body: dict[str, Any]) -> str:
        reply = json.loads(grounded_reply(body))
        reply["citations"] = ["S1", "S2", "S3"]
        return json.dumps(reply)

    fake_ollama.respond_with("qwen2.5:1.5b", cite_all)
    answer = (
        await make_graph().ainvoke(
            {"query": "How quickly does Brightwater Lettings return deposits?"}
        )
    )["answer"]

    result = answer.worker_results[0]
    assert "14 days" in result.answer and len(result.citations) == 1
    assert answer.citations == result.citations


async def test_a_planned_answer_cites_only_the_answers_it_kept(
    make_graph: Any, fake_ollama: FakeOllama
) -> None:
    def reply(body: dict[str, Any]) -> str:
        if "Tax Credit" in body["messages"][-1]["content"].split("\n", 1)[0]:
            unsure = _reply("not covered", ("S1", "S2"))
            return json.dumps({**unsure, "confidence": 0.1, "needs_escalation": True})
        return grounded_reply(body)

    fake_ollama.respond_with("qwen2.5:1.5b", reply)
    sup = ScriptedSupervisor("Only the rent part is answered here.", where="local")
    graph = make_graph(supervisor_llm=sup, planner={"mode": "auto", "repair": "append"})
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]

    by_worker = {r.worker: r for r in answer.worker_results}
    assert by_worker["finance"].citations  # the unsure part cited passages …
    assert answer.citations and {c.worker for c in answer.citations} == {"tenancy"}  # … not kept


# -- the router's fill, on hand-made scores ------------------------------------------------


def _scored(text: str, clauses: list[str], probs: list[list[float]], asks: list[bool]) -> Any:
    spans, at = [], 0
    for c in clauses:
        at = text.index(c, at)
        spans.append((at, at + len(c)))
        at += len(c)
    return Scored(
        text,
        np.array([0.95, 0.9, 0.05]),  # tenancy, finance, health: the whole question
        np.array([0.5, 0.45, 0.04, 0.01]),
        spans,
        np.array(probs),
        asks,
    )


def _explain(scored: Any, clause_workers: list[int | None], chosen: list[int]) -> RouteDecision:
    model = SimpleNamespace(
        workers=["tenancy", "finance", "health"],
        thresholds=Thresholds(0.7, 0.5, 1.0, 0.5, 0.05, 0.7),
    )
    conf = [0.9 if w is not None else 0.0 for w in clause_workers]
    choice = Choice(chosen, clause_workers, conf, split=False, via_clauses=False)
    return explain(model, scored, choice)  # type: ignore[arg-type]


def test_a_missed_specialist_takes_the_asking_clause_it_scores_highest_on() -> None:
    text = "My landlord kept my deposit. How much can I deduct, and how long do I keep receipts?"
    clauses = [
        "My landlord kept my deposit.",
        "How much can I deduct",
        "how long do I keep receipts?",
    ]
    probs = [[0.9, 0.05, 0.03, 0.02], [0.4, 0.58, 0.01, 0.01], [0.01, 0.97, 0.01, 0.01]]
    # The rule matched both questions to finance; tenancy is chosen by the whole question.
    decision = _explain(_scored(text, clauses, probs, [False, True, True]), [None, 1, 1], [0, 1])

    assert decision.filled and not decision.split
    assert [(p.worker, p.by, p.text) for p in decision.parts] == [
        ("tenancy", "best clause", "My landlord kept my deposit. How much can I deduct"),
        ("finance", "clause", "how long do I keep receipts?"),
    ]  # the telling clause joins the part after it; tenancy's score on the clause: 0.40
    assert decision.parts[0].probability == 0.4


def test_a_missed_specialist_with_no_clause_to_spare_is_asked_the_whole_question() -> None:
    text = "What is the deposit cap, and what is the ibuprofen dose?"
    clauses = ["What is the deposit cap", "what is the ibuprofen dose?"]
    probs = [[0.9, 0.05, 0.03, 0.02], [0.01, 0.02, 0.96, 0.01]]
    decision = _explain(_scored(text, clauses, probs, [True, True]), [0, 2], [0, 2, 1])

    assert decision.filled
    assert [(p.worker, p.by) for p in decision.parts] == [
        ("tenancy", "clause"),
        ("health", "clause"),
        ("finance", "question"),
    ]
    assert decision.parts[-1].text == text
    assert "finance (the whole question)" in decision.reason
    plan = router_plan(decision, decision.workers, PlannerSettings(), 4)
    assert plan is not None and plan.subtasks[-1].instruction == text


def test_no_clause_about_any_specialist_leaves_the_plan_to_the_supervisor() -> None:
    text = "Is that right, and is it fair?"
    clauses = ["Is that right", "is it fair?"]
    probs = [[0.1, 0.1, 0.0, 0.8], [0.1, 0.1, 0.0, 0.8]]
    decision = _explain(_scored(text, clauses, probs, [True, True]), [None, None], [0, 1])

    assert decision.kind == "plan" and not decision.filled and not decision.parts
    assert router_plan(decision, decision.workers, PlannerSettings(), 4) is None


@pytest.mark.parametrize(
    "answer",
    [
        "Not covered by the passages.",
        "The passages don't say how long the landlord has.",
        "I can't find the deadline in the passages.",
        "I cannot answer that from the passages.",
    ],
)
def test_a_part_that_opens_by_saying_it_cannot_answer_is_no_answer(answer: str) -> None:
    assert not is_answer(_result("tenancy", "How long does the landlord have?", answer))


def test_a_part_that_merely_mentions_missing_information_later_is_an_answer() -> None:
    answer = "Within 10 days; the passages give no information on fees."
    assert is_answer(_result("tenancy", "How long does the landlord have?", answer))
