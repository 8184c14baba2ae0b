"""The ledger accounts for exactly the calls the servers saw, with the servers' own counters."""

from __future__ import annotations

from typing import Any

from tandem.graphs import build_ledger
from tandem.workers import CallRecord
from tandem.workers.testing import FakeOllama, FakeOpenAI, grounded_reply, rule_supervisor

CROSS_Q = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)


def _words(messages: list[dict[str, Any]]) -> int:
    """How both fakes count prompt tokens: whitespace-separated words of every message."""
    return sum(len(str(m.get("content", "")).split()) for m in messages)


async def test_ledger_rows_and_tokens_match_what_the_servers_saw(
    make_graph: Any, ingest: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    worker_replies: list[str] = []
    supervisor_replies: list[str] = []

    def worker(body: dict[str, Any]) -> str:
        worker_replies.append(grounded_reply(body))
        return worker_replies[-1]

    def supervisor(body: dict[str, Any]) -> str:
        supervisor_replies.append(rule_supervisor(body))
        return supervisor_replies[-1]

    fake_ollama.respond_with("qwen2.5:1.5b", worker)
    fake_openai.responder = supervisor
    graph = make_graph()
    await ingest(graph)  # ingestion embeddings are store maintenance, not ledger rows
    fake_ollama.reset()

    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]
    ledger = answer.ledger
    rows = ledger.calls
    chats = fake_ollama.chat_requests()
    embeds = [r.body for r in fake_ollama.requests_to("/api/embed")]
    completions = fake_openai.completions()

    worker_rows = [c for c in rows if c.role == "worker"]
    supervisor_rows = [c for c in rows if c.role == "supervisor"]
    embed_rows = [c for c in rows if c.role == "embed"]
    assert len(worker_rows) == len(chats) == 2
    assert len(supervisor_rows) == len(completions) == 2
    assert len(embed_rows) == len(embeds) >= 2
    assert len(rows) == len(worker_rows) + len(supervisor_rows) + len(embed_rows)

    assert sum(c.tokens_in for c in worker_rows) == sum(_words(b["messages"]) for b in chats)
    assert sum(c.tokens_out for c in worker_rows) == sum(
        max(1, len(r.split())) for r in worker_replies
    )
    assert sum(c.tokens_in for c in supervisor_rows) == sum(
        _words(b["messages"]) for b in completions
    )
    assert sum(c.tokens_out for c in supervisor_rows) == sum(
        max(1, len(r.split())) for r in supervisor_replies
    )
    embed_words = sum(
        len(t.split())
        for b in embeds
        for t in ([b["input"]] if isinstance(b["input"], str) else b["input"])
    )
    assert sum(c.tokens_in for c in embed_rows) == embed_words

    assert {c.worker for c in worker_rows} == {"tenancy", "finance"}
    assert {c.model for c in worker_rows} == {"ollama:qwen2.5:1.5b"}
    assert {c.model for c in supervisor_rows} == {"openai/fake-large"}
    assert [c.purpose for c in supervisor_rows] == ["plan", "synthesize"]
    assert all(c.host == fake_ollama.url for c in worker_rows)

    t = ledger.totals
    assert t.calls == len(rows)
    assert (t.worker_calls, t.supervisor_calls, t.failed_calls) == (2, 2, 0)
    assert t.tokens_in == sum(c.tokens_in for c in rows)
    assert t.tokens_out == sum(c.tokens_out for c in rows)
    # The fake supervisor listens on 127.0.0.1, so with egress "auto" nothing left the machine.
    assert (t.local_calls, t.remote_calls, t.local_share) == (len(rows), 0, 1.0)
    assert t.bytes_sent_remote == 0 and t.cost_usd == 0.0


async def test_remote_supervisor_calls_count_as_egress(
    make_graph: Any, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph(supervisor={"egress": "remote"})
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]
    t = answer.ledger.totals

    remote = [c for c in answer.ledger.calls if c.where == "remote"]
    assert [c.role for c in remote] == ["supervisor", "supervisor"]
    assert t.remote_calls == 2
    assert t.local_share == round((t.calls - 2) / t.calls, 4) < 1.0
    assert t.bytes_sent_remote == sum(c.bytes_sent for c in remote)
    assert t.bytes_sent_remote > len(CROSS_Q.encode())
    assert answer.privacy.supervisor_where == "remote"


def test_build_ledger_totals() -> None:
    rows = [
        CallRecord(role="embed", model="ollama:e", where="local", tokens_in=5, seconds=0.1),
        CallRecord(
            role="worker",
            model="ollama:w",
            where="local",
            tokens_in=100,
            tokens_out=20,
            seconds=1.0,
            worker="tenancy",
        ),
        CallRecord(
            role="supervisor",
            model="openai/x",
            where="remote",
            tokens_in=300,
            tokens_out=50,
            seconds=2.0,
            cost_usd=0.0125,
            bytes_sent=1200,
        ),
        CallRecord(
            role="supervisor",
            model="openai/x",
            where="remote",
            attempts=3,
            error="[model 'openai/x'] provider error",
            bytes_sent=800,
        ),
    ]
    t = build_ledger(rows).totals
    assert (t.calls, t.local_calls, t.remote_calls) == (4, 2, 2)
    assert (t.worker_calls, t.supervisor_calls, t.failed_calls) == (1, 2, 1)
    assert (t.tokens_in, t.tokens_out) == (405, 70)
    assert t.seconds == 3.1
    assert t.cost_usd == 0.0125
    assert t.local_share == 0.5
    assert t.bytes_sent_remote == 2000
    empty = build_ledger([]).totals
    assert (empty.calls, empty.local_share) == (0, 1.0)
