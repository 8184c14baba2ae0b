"""Budgets stop escalation without overspending; the ledger prices runs and their counterfactual."""

from __future__ import annotations

from typing import Any

import pytest

from tandem.agents.privacy.policy import BUDGET_NOTE
from tandem.graphs import SessionLedger
from tandem.workers.testing import FakeOllama, FakeOpenAI, grounded_reply

# litellm's response types build a pydantic schema with a ReadOnly TypedDict item on first
# use and warn about it; which test triggers that depends on import order. Not tandem's.
pytestmark = pytest.mark.filterwarnings("ignore:.*`ReadOnly` qualifier")

CROSS_Q = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)
PRICE = {"openai/fake-large": {"input": 10.0, "output": 30.0}}  # $ per million tokens


def _words(messages: list[dict[str, Any]]) -> int:
    """How both fakes count prompt tokens: whitespace-separated words of every message."""
    return sum(len(str(m.get("content", "")).split()) for m in messages)


async def test_zero_supervisor_calls_answers_from_the_workers(
    make_graph: Any, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph(supervisor={"egress": "remote"}, cost={"max_supervisor_calls_per_run": 0})
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]
    assert fake_openai.requests == []
    assert {r.worker for r in answer.worker_results if r.status == "ok"} == {"tenancy", "finance"}
    assert "[tenancy]" in answer.text and "[finance]" in answer.text  # joined locally
    assert answer.text.endswith(BUDGET_NOTE)
    assert any("max_supervisor_calls_per_run = 0" in n for n in answer.notes)
    t = answer.ledger.totals
    assert (t.supervisor_calls, t.remote_calls, t.cost_usd) == (0, 0, 0.0)
    assert t.budget_stops >= 1


async def test_one_supervisor_call_plans_then_synthesizes_locally(
    make_graph: Any, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph(supervisor={"egress": "remote"}, cost={"max_supervisor_calls_per_run": 1})
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]
    assert [b["response_format"]["json_schema"]["name"] for b in fake_openai.completions()] == [
        "plan"
    ]
    assert answer.ledger.totals.supervisor_calls == 1 == answer.ledger.egress.requests
    assert BUDGET_NOTE in answer.text


@pytest.mark.parametrize("budget", [0.0, 0.02, 0.05, 0.09, 1.0])
async def test_remote_dollar_budget_is_never_exceeded(
    make_graph: Any, fake_openai: FakeOpenAI, budget: float
) -> None:
    graph = make_graph(
        supervisor={"egress": "remote", "max_tokens": 400},
        cost={"prices": PRICE, "max_remote_usd_per_run": budget},
    )
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]
    t = answer.ledger.totals
    sent = fake_openai.completions()
    assert t.cost_usd <= budget
    assert t.remote_calls == len(sent)
    stopped = BUDGET_NOTE in answer.text
    assert stopped == (len(sent) < 2)  # plan + synthesize unless the budget stopped one
    if budget == 1.0:
        assert not stopped and t.cost_usd > 0
    if budget == 0.0:
        assert sent == [] and stopped


async def test_dollar_budget_without_a_known_price_refuses_to_guess(
    make_graph: Any, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph(supervisor={"egress": "remote"}, cost={"max_remote_usd_per_run": 5.0})
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]
    assert fake_openai.requests == []
    assert any("no price is known for openai/fake-large" in n for n in answer.notes)
    assert BUDGET_NOTE in answer.text


async def test_savings_come_from_the_servers_token_counts(
    make_graph: Any, ingest: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    replies: list[str] = []

    def worker(body: dict[str, Any]) -> str:
        replies.append(grounded_reply(body))
        return replies[-1]

    fake_ollama.respond_with("qwen2.5:1.5b", worker)
    graph = make_graph(supervisor={"egress": "remote"}, cost={"prices": PRICE})
    await ingest(graph)
    fake_ollama.reset()
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]

    chats = fake_ollama.chat_requests()
    bodies = fake_openai.completions()
    sup_rows = [c for c in answer.ledger.calls if c.role == "supervisor"]
    sup_in = sum(_words(b["messages"]) for b in bodies)
    sup_out = sum(c.tokens_out for c in sup_rows)
    work_in = sum(_words(b["messages"]) for b in chats)
    work_out = sum(max(1, len(r.split())) for r in replies)
    assert sum(c.tokens_in for c in sup_rows) == sup_in

    cost = (sup_in * 10 + sup_out * 30) / 1e6
    counterfactual = ((sup_in + work_in) * 10 + (sup_out + work_out) * 30) / 1e6
    t = answer.ledger.totals
    assert t.cost_usd == pytest.approx(cost)
    assert t.counterfactual_usd == pytest.approx(counterfactual)
    assert t.savings_pct == pytest.approx(100 * (counterfactual - cost) / counterfactual, abs=0.01)
    assert 0 < t.savings_pct < 100
    assert t.local_seconds > 0 and all(
        c.cost_usd == 0 for c in answer.ledger.calls if c.where == "local"
    )

    session = SessionLedger()
    session.add(answer.ledger, "t1")
    session.add(answer.ledger, "t2")
    session.add(answer.ledger, "t1")
    assert session.runs == 3 and session.totals.cost_usd == pytest.approx(3 * cost)
    assert session.threads["t1"].counterfactual_usd == pytest.approx(2 * counterfactual)
    assert session.totals.savings_pct == pytest.approx(t.savings_pct, abs=0.01)
    assert session.egress.requests == 3 * len(bodies)


def test_one_savings_computation_with_custom_prices() -> None:
    """The ledger and a session's /cost use the same computation, [cost.prices] included."""
    from tandem.agents.cost import ModelPrice, savings
    from tandem.graphs import build_ledger
    from tandem.workers import CallRecord

    calls = [
        CallRecord(role="worker", model="ollama:w", where="local", tokens_in=900, tokens_out=100),
        CallRecord(
            role="supervisor",
            model="openai/x",
            where="remote",
            tokens_in=400,
            tokens_out=100,
            cost_usd=0.007,
        ),
        CallRecord(role="embed", model="ollama:e", where="local", tokens_in=50),
    ]
    prices = {"openai/x": ModelPrice(input=10, output=30)}
    counterfactual = ((900 + 400) * 10 + (100 + 100) * 30) / 1e6
    saved = savings(calls, "openai/x", prices)
    assert saved.local_tokens == 1000
    assert saved.counterfactual_usd == pytest.approx(counterfactual)
    assert saved.usd == pytest.approx(counterfactual - 0.007)
    assert saved.rate_source == "[cost.prices] of openai/x"
    totals = build_ledger(calls, supervisor_model="openai/x", prices=prices).totals
    assert totals.counterfactual_usd == pytest.approx(saved.counterfactual_usd)
    assert totals.savings_pct == saved.pct
    local = savings(calls, "embedded/x", {}, supervisor_where="local")
    assert local.usd is None and "local" in local.rate_source
