"""The audit log tells the truth and budgets count what may be billed (issue 13).

Against the fake OpenAI server standing in for a hosted provider (its ``openai/`` model on
a loopback endpoint that is not trusted, so it is remote):

* the egress record is on disk *before* the request reaches the server, then completed;
* a 429 then a retry are two calls: ``max_supervisor_calls_per_run = 1`` lets one through;
* a timed-out request is charged at its worst case against ``max_remote_usd_per_run``;
* a call that fails before sending (no API key) is logged as not sent, 0 bytes, never
  retried, and the run says the supervisor could not be reached.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tandem.agents.privacy import egress_log_path, read_egress_log
from tandem.workers.testing import FakeOpenAI

pytestmark = pytest.mark.filterwarnings("ignore:.*`ReadOnly` qualifier")

CROSS_Q = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)
PRICE = {"openai/fake-large": {"input": 10.0, "output": 30.0}}  # $ per million tokens
HOSTED = {"trusted_hosts": []}  # the fake is a hosted provider: remote


def _chat_requests(fake: FakeOpenAI) -> int:
    return len(fake.requests_to("/v1/chat/completions"))


async def test_the_audit_record_is_written_before_the_request_leaves(
    make_graph: Any, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph(privacy={"policy": "redact", **HOSTED})
    log = egress_log_path(graph.runtime.config.data_dir)
    seen_at_arrival: list[list[str]] = []

    def responder(request: dict[str, Any]) -> str:
        # Runs in the server when the request arrives: the log must already hold it.
        records, _ = read_egress_log(log)
        seen_at_arrival.append([r.outcome for r in records])
        return json.dumps({"subtasks": [], "rationale": "none"})

    fake_openai.responder = responder
    await graph.ainvoke({"query": "Who painted the Mona Lisa?"})
    assert seen_at_arrival and seen_at_arrival[0][-1] == "sending"
    records, bad = read_egress_log(log)
    assert bad == 0 and records and all(r.outcome == "ok" for r in records)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 2 * len(records)  # written ahead, then completed
    assert {line["id"] for line in lines} == {r.id for r in records}


async def test_a_retried_429_counts_as_two_calls(make_graph: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.fail(status=429, message="rate limited", path="/v1/chat/completions")
    graph = make_graph(
        privacy={"policy": "redact", **HOSTED}, cost={"max_supervisor_calls_per_run": 1}
    )
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]
    assert _chat_requests(fake_openai) == 1  # the retry would have been a second call
    assert answer.ledger.totals.budget_stops >= 1
    records, _ = read_egress_log(egress_log_path(graph.runtime.config.data_dir))
    assert len(records) == 1 and records[0].outcome.startswith("error: rate limited")


async def test_timeouts_count_at_their_worst_case_against_the_dollar_budget(
    make_graph: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.stall(3.0, path="/v1/chat/completions", times=10)
    graph = make_graph(
        privacy={"policy": "redact", **HOSTED},
        supervisor={"timeout": 0.3, "max_tokens": 100},
        cost={"prices": PRICE, "max_remote_usd_per_run": 0.06},
    )
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]
    records, _ = read_egress_log(egress_log_path(graph.runtime.config.data_dir))
    worst = [r.bytes_sent * 10e-6 + 100 * 30e-6 for r in records]  # every byte a token
    assert records and sum(worst) <= 0.06  # the budget stopped the next try in time
    assert len(records) < 6  # six timeouts were sent before this was fixed
    assert all(r.outcome.startswith("error") for r in records)
    spent = sum(c.cost_usd for c in answer.ledger.calls)
    assert 0 < spent <= 0.06  # the timed-out requests are on the bill, at their worst case
    assert answer.ledger.totals.budget_stops >= 1


async def test_missing_credentials_are_not_retried_and_nothing_is_logged_as_sent(
    make_graph: Any, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    graph = make_graph(
        privacy={"policy": "redact", **HOSTED}, supervisor={"extra": {"api_key": None}}
    )
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]
    assert _chat_requests(fake_openai) == 0
    sup = [c for c in answer.ledger.calls if c.role == "supervisor"]
    assert sup and all(c.attempts == 1 for c in sup)  # never retried
    assert any("authentication failed" in c.error for c in sup)
    records, _ = read_egress_log(egress_log_path(graph.runtime.config.data_dir))
    assert records and all(r.outcome.startswith("not sent") and r.bytes_sent == 0 for r in records)
    assert answer.ledger.egress.requests == 0 and answer.ledger.egress.bytes_sent == 0


CLOUD = "gpt-oss:20b-cloud"  # an Ollama cloud model: the local server forwards it off-machine


async def test_a_remote_worker_model_is_in_the_egress_log_before_it_is_asked(
    make_config: Any, data_dir: Any
) -> None:
    from tandem.graphs import build_graph
    from tandem.workers.testing import FakeOllama

    from .conftest import EMBED_MODEL, demo_specs

    with FakeOllama(chat_models=(CLOUD,), embed_models=(EMBED_MODEL,)) as ollama:
        log = egress_log_path(data_dir)
        seen_at_arrival: list[list[str]] = []

        def responder(body: dict[str, Any]) -> str:
            records, _ = read_egress_log(log)
            seen_at_arrival.append([r.outcome for r in records])
            return json.dumps(
                {
                    "answer": "Within 14 days.",
                    "confidence": 0.9,
                    "citations": [1],
                    "needs_escalation": False,
                }
            )

        ollama.respond_with(CLOUD, responder)
        url = ollama.url
        graph = build_graph(
            make_config(
                ollama={"host": ollama.url},
                workers=demo_specs(f"ollama:{CLOUD}"),
                privacy={"policy": "allow"},  # a remote worker is refused otherwise
            )
        )
        assert graph.runtime.endpoints["worker tenancy"].where == "remote"
        await graph.ainvoke({"query": "How quickly does Brightwater return deposits?"})
        chats = len(ollama.requests_to("/api/chat"))
        ollama.fail(status=500, path="/api/chat", times=5)
        await graph.ainvoke({"query": "How much deposit can my landlord ask for?"})

    assert chats >= 1 and seen_at_arrival and seen_at_arrival[0][-1] == "sending"
    records, bad = read_egress_log(log)
    answers = [r for r in records if r.model == f"ollama:{CLOUD}"]
    assert bad == 0 and len(answers) >= chats + 1
    first = answers[0]
    assert first.outcome == "ok" and first.bytes_sent > 0 and first.host == url
    assert first.purpose.startswith("answer (") and first.policy == "allow"
    assert any(r.outcome.startswith("error: ") for r in answers[chats:])
    # The embedding model on the same server is local: nothing of it is in the log.
    assert not [r for r in records if EMBED_MODEL in r.model]
