"""Fault-injection battery: one named scenario each, against the fake Ollama/OpenAI servers.

Every test asserts what the user gets (answer text, notes, error type and message naming
worker/model/host with a hint) and what the fakes saw (request counts, statuses, timing).
Kill-and-resume is in test_resume.py, the 50-run load test in test_load.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.workers.backends import OllamaBackend, OllamaSettings
from tandem.workers.errors import BackendRejected
from tandem.workers.testing import FakeOllama, FakeOpenAI

CHAT = "qwen2.5:1.5b"
DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"
CROSS_Q = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)
BUSY = "server busy, please try again.  maximum pending requests exceeded"
SUPERVISOR = "openai/fake-large"


def _workers(**models: str) -> list[Any]:
    """The demo workers, with per-worker Ollama models where given."""
    from tandem.workers.builtin import specs

    return [s.model_copy(update={"model": f"ollama:{models.get(s.name, CHAT)}"}) for s in specs()]


def _purposes(fake: FakeOpenAI) -> list[str]:
    """What each supervisor request was for: plan (structured output) or free text."""
    return ["plan" if b.get("response_format") else "text" for b in fake.completions()]


def _worker_rows(answer: Any) -> list[Any]:
    return [c for c in answer.ledger.calls if c.role == "worker"]


# -- Ollama down -----------------------------------------------------------------------------


async def test_ollama_down_before_the_run(
    make_graph: Any, closed_port: int, fake_openai: FakeOpenAI
) -> None:
    host = f"http://127.0.0.1:{closed_port}"
    answer = (await make_graph(ollama={"host": host}).ainvoke({"query": CROSS_Q}))["answer"]

    # Routing needs local embeddings: it fails and says so, naming the host and the fix.
    assert any("routing failed" in n and host in n and "ollama serve" in n for n in answer.notes)
    local = [r for r in answer.worker_results if r.model.startswith("ollama:")]
    assert {r.worker for r in local} == {"tenancy", "finance"}
    for r in local:
        assert r.status == "failed" and not r.grounded
        assert (
            f"cannot connect to Ollama at {host}" in r.reason and "(after 3 attempts)" in r.reason
        )
        assert f"worker '{r.worker}'" in r.reason and f"model 'ollama:{CHAT}'" in r.reason
    # Each missing part went to the supervisor instead (egress allowed), then one synthesis.
    assert sorted(_purposes(fake_openai)) == ["plan", "text", "text", "text"]
    assert {r.worker for r in answer.worker_results if r.model == SUPERVISOR} == {
        "tenancy",
        "finance",
    }
    assert sum("supervisor answered that part" in n for n in answer.notes) == 2
    assert answer.text.startswith("Combined answer:")


async def test_ollama_goes_down_mid_run(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    # Routing and retrieval (embeddings) work; then every chat connection is dropped.
    fake_ollama.fail(status=0, path="/api/chat", drop=True, times=100)
    answer = (await make_graph().ainvoke({"query": CROSS_Q}))["answer"]

    chats = fake_ollama.requests_to("/api/chat")
    assert len(chats) == 2 * 3  # two workers, three attempts each (connection errors retry)
    assert fake_ollama.requests_to("/api/embed")  # it was up for routing and retrieval
    failed = [r for r in answer.worker_results if r.status == "failed"]
    assert {r.worker for r in failed} == {"tenancy", "finance"}
    assert all(f"cannot connect to Ollama at {fake_ollama.url}" in r.reason for r in failed)
    assert all(row.attempts == 3 and row.error for row in _worker_rows(answer))
    assert sorted(_purposes(fake_openai)) == ["plan", "text", "text", "text"]
    assert "supervisor answered that part" in " ".join(answer.notes)


# -- model missing / busy / stream error / timeout -------------------------------------------


async def test_model_missing_404_uses_the_configured_fallback_model(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.chat_models.add("qwen2.5:0.5b")
    graph = make_graph(
        workers=_workers(tenancy="llama-missing:3b"),
        reliability={"fallbacks": {"tenancy": {"model": "ollama:qwen2.5:0.5b"}}},
    )
    answer = (await graph.ainvoke({"query": DIRECT_Q}))["answer"]

    missing = fake_ollama.chat_requests("llama-missing:3b")
    assert len(missing) == 1  # a 404 is never retried
    assert len(fake_ollama.chat_requests("qwen2.5:0.5b")) == 1
    (result,) = answer.worker_results
    assert result.status == "ok" and result.model == "ollama:qwen2.5:0.5b"
    assert "14 days" in answer.text and not answer.escalated
    note = next(n for n in answer.notes if "fallback" in n)
    assert "ollama:llama-missing:3b" in note and "not found" in note
    assert "ollama pull llama-missing:3b" in note
    assert fake_openai.requests == []  # the fallback answered: nothing escalated


async def test_model_missing_without_fallback_names_the_model_and_the_pull_command(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph(
        workers=_workers(tenancy="llama-missing:3b"), reliability={"escalate_failed": False}
    )
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]

    failed = next(r for r in answer.worker_results if r.worker == "tenancy")
    assert failed.status == "failed" and "ollama pull llama-missing:3b" in failed.reason
    assert len(fake_ollama.chat_requests("llama-missing:3b")) == 1
    # No escalation allowed: the synthesis is told the part failed (and says so).
    synthesis = fake_openai.completions()[-1]["messages"][-1]["content"]
    assert 'worker="tenancy" status="failed"' in synthesis
    assert sorted(_purposes(fake_openai)) == ["plan", "text"]


async def test_busy_503_then_recovers_honouring_retry_after(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.fail(status=503, message=BUSY, path="/api/chat", headers={"Retry-After": "1"})
    answer = (await make_graph().ainvoke({"query": DIRECT_Q}))["answer"]

    first, second = fake_ollama.requests_to("/api/chat")
    assert (first.status, second.status) == (503, 200)
    # The test config's backoff is 10 ms: the 1 s wait is the server's Retry-After.
    assert second.started - first.ended >= 0.9
    assert [r.status for r in answer.worker_results] == ["ok"]
    assert "14 days" in answer.text
    (row,) = _worker_rows(answer)
    assert row.attempts == 2 and row.error == ""
    assert fake_openai.requests == []


async def test_error_mid_stream_fails_the_streamed_answer_then_escalates(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.fail_mid_stream(CHAT, "llama runner process has terminated", after=3)
    out = await make_graph().ainvoke({"query": DIRECT_Q})
    answer = out["answer"]

    chats = fake_ollama.chat_requests(CHAT)
    assert chats[0]["stream"] is True  # the direct answer streams …
    assert all(c["stream"] is False for c in chats[1:])  # … the planned retry does not
    first = answer.worker_results[0]
    assert first.status == "failed"
    assert "middle of a stream: llama runner process has terminated" in first.reason
    # Not retried (tokens were already shown): one streamed request, then the plan.
    assert len(chats) == 2 and answer.escalated
    assert answer.worker_results[-1].status == "ok"
    assert _purposes(fake_openai) == ["plan", "text"]


async def test_error_mid_stream_is_a_clean_error_from_the_backend(
    fake_ollama: FakeOllama,
) -> None:
    backend = OllamaBackend(CHAT, OllamaSettings(host=fake_ollama.url), worker="tenancy")
    fake_ollama.script(CHAT, "one two three four five six")
    fake_ollama.fail_mid_stream(CHAT, "unexpected EOF", after=2)
    pieces: list[str] = []
    with pytest.raises(BackendRejected) as info:
        await backend.chat([{"role": "user", "content": "go"}], on_token=pieces.append)
    assert pieces == ["one ", "two "]
    err = info.value
    assert not err.retryable and err.worker == "tenancy" and err.host == fake_ollama.url
    assert "unexpected EOF" in str(err) and err.hint and "log" in err.hint


async def test_worker_timeout_is_retried_then_escalated(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.stall(3.0, path="/api/chat", times=3)  # three answers that never come in time
    graph = make_graph(ollama={"timeout": 0.4})
    started = time.monotonic()
    answer = (await graph.ainvoke({"query": DIRECT_Q}))["answer"]
    assert time.monotonic() - started < 6  # 3 × 0.4 s + backoff, not 3 × 3 s

    first = answer.worker_results[0]
    assert first.status == "failed" and "no complete reply within [ollama] timeout" in first.reason
    assert "raise [ollama] timeout" in first.reason and "(after 3 attempts)" in first.reason
    assert len(fake_ollama.requests_to("/api/chat")) == 4  # 3 timed out + the planned retry
    assert answer.escalated and answer.worker_results[-1].status == "ok"
    assert "14 days" in answer.text


async def test_malformed_json_twice_then_the_supervisor_answers_that_part(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.chat_models.add("tenancy-model")
    fake_ollama.script("tenancy-model", "Sure! Rent can go up.", "{oops")
    graph = make_graph(workers=_workers(tenancy="tenancy-model"))
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]

    assert len(fake_ollama.chat_requests("tenancy-model")) == 2  # answer + one repair
    failed = next(r for r in answer.worker_results if r.status == "failed")
    assert failed.worker == "tenancy" and "invalid output after one repair" in failed.reason
    stand_in = next(r for r in answer.worker_results if r.model == SUPERVISOR)
    assert stand_in.worker == "tenancy" and stand_in.status == "ok" and not stand_in.grounded
    finance = next(r for r in answer.worker_results if r.worker == "finance")
    assert finance.status == "ok"
    assert sorted(_purposes(fake_openai)) == ["plan", "text", "text"]
    assert "[tenancy]" in answer.text and "[finance]" in answer.text


# -- supervisor ------------------------------------------------------------------------------


async def test_supervisor_429_then_success_honouring_retry_after(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail(status=429, message="rate limited", headers={"Retry-After": "1"})
    answer = (await make_graph().ainvoke({"query": CROSS_Q}))["answer"]

    reqs = fake_openai.requests_to("/v1/chat/completions")
    assert [r.status for r in reqs] == [429, 200, 200]  # plan (rate limited, again), synthesis
    assert reqs[1].started - reqs[0].ended >= 0.9  # waited for Retry-After, not 10 ms
    plan = next(c for c in answer.ledger.calls if c.purpose == "plan")
    assert plan.attempts == 2 and plan.error == ""
    assert not any("could not" in n for n in answer.notes)
    assert "[tenancy]" in answer.text and "[finance]" in answer.text


async def test_supervisor_down_synthesizes_locally_and_names_the_missing_part(
    make_graph: Any, fake_ollama: FakeOllama, closed_port: int
) -> None:
    fake_ollama.chat_models.add("tenancy-model")
    fake_ollama.script("tenancy-model", "not json", "still not json")
    api_base = f"http://127.0.0.1:{closed_port}/v1"
    graph = make_graph(supervisor={"api_base": api_base}, workers=_workers(tenancy="tenancy-model"))
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]

    assert any("could not plan" in n and "cannot reach the supervisor" in n for n in answer.notes)
    assert any("could not escalate 'tenancy'" in n for n in answer.notes)
    assert any("joined answers locally" in n for n in answer.notes)
    # The answer is built here: finance's answer with its tag, and the gap said plainly.
    assert "[finance]" in answer.text
    # The missing part is named in the answer; its error text is only in the notes.
    assert "Not answered:" in answer.text and "(tenancy failed)" in answer.text
    assert "invalid output" not in answer.text
    assert any("invalid output" in n for n in answer.notes)
    assert answer.status == "partial"
    supervisor_rows = [c for c in answer.ledger.calls if c.role == "supervisor"]
    # plan (3 attempts) and one escalation (3 attempts); no synthesis attempt after that.
    assert [(c.purpose, c.attempts) for c in supervisor_rows] == [("plan", 3), ("escalate", 3)]
    assert api_base.removesuffix("/v1") in supervisor_rows[0].error


# -- store -----------------------------------------------------------------------------------


@pytest.fixture
def locked_store(data_dir: Path) -> Iterator[Path]:
    """Another process holding the SQLite write lock of the Chroma store directory."""
    db = data_dir / "stores" / "chroma.sqlite3"
    code = (
        "import sqlite3, sys, time\n"
        f"con = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "con.execute('BEGIN EXCLUSIVE')\n"
        "con.execute('CREATE TABLE IF NOT EXISTS held_by_test(x)')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    try:
        yield db
    finally:
        proc.kill()
        proc.communicate(timeout=10)  # reaps it and closes its pipes


@pytest.mark.integration  # another process holds the store's lock
async def test_store_locked_answers_ungrounded_and_reports_the_error_once(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, locked_store: Path
) -> None:
    graph = make_graph(reliability={"store_timeout": 1.0})
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]

    store_notes = [n for n in answer.notes if "knowledge store" in n]
    assert len(store_notes) == 1, answer.notes  # once, though two workers hit it
    note = store_notes[0]
    assert "is locked" in note and "ungrounded" in note
    assert str(locked_store.parent) in note and "[stores] url" in note
    workers = [r for r in answer.worker_results if r.model.startswith("ollama:")]
    assert {r.worker for r in workers} == {"tenancy", "finance"}
    assert all(r.status == "ok" and not r.grounded and not r.citations for r in workers)
    assert all("answered without retrieval" in r.reason for r in workers)
    prompts = [c["messages"][-1]["content"] for c in fake_ollama.chat_requests()]
    assert prompts and all("No passages were found" in p for p in prompts)
    assert answer.citations == []


async def test_store_corrupt_answers_ungrounded_with_the_rebuild_command(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, data_dir: Path
) -> None:
    (data_dir / "stores" / "chroma.sqlite3").write_bytes(b"this is not a database" * 200)
    answer = (await make_graph().ainvoke({"query": DIRECT_Q}))["answer"]

    notes = [n for n in answer.notes if "knowledge store" in n]
    assert len(notes) == 1, answer.notes
    note = notes[0]
    assert "is damaged" in note and "tandem ingest" in note and str(data_dir / "stores") in note
    assert answer.worker_results and not any(r.grounded for r in answer.worker_results)
    assert answer.text.strip()


# -- deadline and input bounds ---------------------------------------------------------------


async def test_run_deadline_returns_what_finished_and_names_what_did_not(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.chat_models.add("tenancy-model")
    fake_ollama.stall(30.0, path="/api/chat", model="tenancy-model", times=1)
    graph = make_graph(workers=_workers(tenancy="tenancy-model"), reliability={"deadline": 1.5})
    # Warm up first (Presidio's engine, litellm): only the deadline may bound the timed run.
    await graph.ainvoke({"query": "What is the basic rate of income tax in Veloria?"})
    started = time.monotonic()
    answer = (await graph.ainvoke({"query": CROSS_Q}))["answer"]
    # The stalled call would hold the run for 30 s; the deadline ends it long before
    # (a generous bound: this machine is shared and slow).
    assert time.monotonic() - started < 15

    tenancy = next(r for r in answer.worker_results if r.worker == "tenancy")
    assert tenancy.status == "failed" and "deadline of 1.5 s" in tenancy.reason
    assert next(r for r in answer.worker_results if r.worker == "finance").status == "ok"
    assert any("deadline" in n and "[reliability] deadline" in n for n in answer.notes)
    assert "Not answered:" in answer.text and "[finance]" in answer.text


def test_runs_on_cpu_models_get_the_embedded_deadline(make_graph: Any) -> None:
    from tandem.graphs._fallback import deadline_at

    limits = {"deadline": 60.0, "embedded_deadline": 3000.0}
    ollama_only = make_graph(reliability=limits).runtime
    assert deadline_at(ollama_only) == pytest.approx(time.time() + 60.0, abs=5)
    # One model on the embedded engine (here the router's embeddings) is enough: a planned
    # run of the bundled CPU models takes ~10 minutes, far past an Ollama-sized deadline.
    on_cpu = make_graph(
        reliability=limits, router={"embed_model": "embedded:qwen2.5-coder-0.5b"}
    ).runtime
    assert deadline_at(on_cpu) == pytest.approx(time.time() + 3000.0, abs=5)


async def test_query_too_long_is_a_clear_usage_error(make_graph: Any) -> None:
    from tandem.workers.errors import UsageError

    graph = make_graph(reliability={"max_query_chars": 200})
    with pytest.raises(UsageError, match="the query is 300 characters; the limit is 200"):
        await graph.ainvoke({"query": "x" * 300})


async def test_long_conversation_is_trimmed_in_the_thread(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    graph = make_graph(checkpointer=InMemorySaver(), reliability={"max_thread_messages": 4})
    cfg = {"configurable": {"thread_id": "long"}}
    for _ in range(3):
        out = await graph.ainvoke({"query": DIRECT_Q}, cfg)
    assert len(out["messages"]) == 4
    assert any("dropped its 2 oldest messages" in n for n in out["answer"].notes)


# -- the CLI never shows a traceback ---------------------------------------------------------


@pytest.mark.integration  # runs the `tandem` command
def test_cli_ask_with_ollama_down_prints_a_clean_degraded_answer(
    data_dir: Path, tmp_path: Path, closed_port: int, fake_openai: FakeOpenAI
) -> None:
    lines = [
        f'data_dir = "{data_dir}"',
        "[supervisor]",
        f'model = "{SUPERVISOR}"',
        f'api_base = "{fake_openai.api_base}"',
        'extra = { api_key = "test-key" }',
        "[ollama]",
        f'host = "http://127.0.0.1:{closed_port}"',
        "[router]",
        'embed_model = "ollama:nomic-embed-text"',
        "[privacy]",
        'policy = "allow"',
        "[retry]",
        "initial_delay = 0.01",
    ]
    for spec in _workers():
        lines += [
            "[[workers]]",
            f'name = "{spec.name}"',
            f"description = {json.dumps(spec.description)}",
            f'model = "{spec.model}"',
        ]
    (tmp_path / "tandem.toml").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "TANDEM_CONFIG": str(tmp_path / "tandem.toml"), "NO_COLOR": "1"}
    tandem = str(Path(sys.executable).parent / "tandem")
    proc = subprocess.run(
        [tandem, "ask", "--json", CROSS_Q],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    assert proc.returncode == 0, output  # degraded, not failed: the supervisor stood in
    answer = json.loads(proc.stdout)
    notes = " ".join(answer.get("notes") or [])
    assert f"127.0.0.1:{closed_port}" in notes and "ollama serve" in notes
    assert answer["text"].strip()
