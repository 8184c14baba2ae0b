"""Backend failures are translated into tandem errors and degrade a run instead of killing it."""

from __future__ import annotations

from typing import Any

import httpx
import ollama
import pytest

from tandem.workers import (
    BackendBusy,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ModelNotFound,
    RunError,
)
from tandem.workers.backends import OllamaBackend, OllamaSettings
from tandem.workers.backends.ollama import translate_ollama_error
from tandem.workers.testing import FakeOllama, FakeOpenAI

DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"
CROSS_Q = (
    "My landlord says my rent is going up by 8% — is that allowed? "
    "And how much of my rent can I claim back through the Renters' Tax Credit?"
)
HOST = "http://10.0.0.7:11434"
BUSY = "server busy, please try again.  maximum pending requests exceeded"


# -- translate_ollama_error -----------------------------------------------------------------


def _translate(exc: BaseException) -> RunError:
    return translate_ollama_error(exc, model="qwen2.5:1.5b", host=HOST, worker="tenancy")


def test_translate_404_is_model_not_found_with_a_pull_hint() -> None:
    err = _translate(ollama.ResponseError("model 'qwen2.5:1.5b' not found", 404))
    assert isinstance(err, ModelNotFound)
    assert not err.retryable
    text = str(err)
    assert "not found" in text and "ollama pull qwen2.5:1.5b" in text
    assert HOST in text and "tenancy" in text
    assert (err.model, err.host, err.worker) == ("ollama:qwen2.5:1.5b", HOST, "tenancy")


def test_translate_503_is_busy_and_retryable() -> None:
    err = _translate(ollama.ResponseError(BUSY, 503))
    assert isinstance(err, BackendBusy) and err.retryable
    assert "503" in str(err) and "OLLAMA_NUM_PARALLEL" in str(err)


def test_translate_500_is_rejected_with_the_server_message_and_retryable() -> None:
    err = _translate(ollama.ResponseError("llama runner process has terminated", 500))
    assert isinstance(err, BackendRejected) and err.retryable
    assert "llama runner process has terminated" in str(err)


def test_translate_400_is_rejected_and_not_retried() -> None:
    err = _translate(ollama.ResponseError('"nomic-embed-text" does not support chat', 400))
    assert isinstance(err, BackendRejected) and not err.retryable
    assert "does not support chat" in str(err)


def test_translate_mid_stream_error() -> None:
    err = _translate(ollama.ResponseError("unexpected EOF", -1))
    assert isinstance(err, BackendRejected) and "middle of a stream" in str(err)


def test_translate_connection_refused_names_the_host() -> None:
    err = _translate(ConnectionError("Failed to connect to Ollama."))
    assert isinstance(err, BackendUnavailable) and err.retryable
    assert f"cannot connect to Ollama at {HOST}" in str(err)
    assert "ollama serve" in str(err)


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("timed out"), httpx.ConnectTimeout("timed out")])
def test_translate_timeouts(exc: BaseException) -> None:
    err = _translate(exc)
    assert isinstance(err, BackendTimeout) and err.retryable
    assert "timeout" in str(err) and type(exc).__name__ in str(err)


# -- the Ollama backend against a real socket --------------------------------------------------


async def test_server_down_raises_backend_unavailable_naming_the_host(closed_port: int) -> None:
    host = f"http://127.0.0.1:{closed_port}"
    backend = OllamaBackend("qwen2.5:1.5b", OllamaSettings(host=host), worker="tenancy")
    with pytest.raises(BackendUnavailable) as info:
        await backend.chat([{"role": "user", "content": "hi"}])
    assert host in str(info.value) and info.value.retryable
    with pytest.raises(BackendUnavailable, match=host):
        await backend.embed(["hi"])


async def test_backend_reports_the_servers_counters(fake_ollama: FakeOllama) -> None:
    backend = OllamaBackend("qwen2.5:1.5b", OllamaSettings(host=fake_ollama.url))
    fake_ollama.script("qwen2.5:1.5b", "three word reply")
    res = await backend.chat([{"role": "user", "content": "one two three four five"}])
    assert (res.content, res.tokens_in, res.tokens_out) == ("three word reply", 5, 3)
    assert res.done_reason == "stop" and res.model == "ollama:qwen2.5:1.5b"
    body = fake_ollama.chat_requests()[0]
    assert body["stream"] is False and body["keep_alive"] == "10m"

    pieces: list[str] = []
    fake_ollama.script("qwen2.5:1.5b", "streamed in four pieces")
    res = await backend.chat([{"role": "user", "content": "go"}], on_token=pieces.append)
    assert "".join(pieces) == res.content == "streamed in four pieces"
    assert len(pieces) == 4 and res.tokens_out == 4


# -- through the graph ---------------------------------------------------------------------


async def test_missing_model_fails_the_worker_with_a_pull_hint_and_the_run_answers(
    make_graph: Any, fake_ollama: FakeOllama
) -> None:
    from tandem.workers.builtin import specs

    workers = [s.model_copy(update={"model": "ollama:llama-missing:3b"}) for s in specs()]
    out = await make_graph(workers=workers).ainvoke({"query": DIRECT_Q})
    answer = out["answer"]

    first = answer.worker_results[0]
    assert first.status == "failed"
    assert "not found" in first.reason and "ollama pull llama-missing:3b" in first.reason
    assert any("not found" in n for n in answer.notes)
    assert answer.text.strip()
    # A missing model is not retried: one request per attempt to answer.
    rows = [c for c in answer.ledger.calls if c.role == "worker"]
    assert len(fake_ollama.chat_requests()) == len(rows)
    assert all(c.attempts == 1 and "not found" in c.error for c in rows)


async def test_ollama_down_still_returns_an_answer_naming_the_host(
    make_graph: Any, closed_port: int, fake_openai: FakeOpenAI
) -> None:
    host = f"http://127.0.0.1:{closed_port}"
    out = await make_graph(ollama={"host": host}).ainvoke({"query": CROSS_Q})
    answer = out["answer"]

    assert any("routing failed" in n and host in n for n in answer.notes)
    local = [r for r in answer.worker_results if r.model.startswith("ollama:")]
    assert local and all(r.status == "failed" for r in local)
    assert all(host in r.reason for r in local)
    # Each failed part was escalated to the (reachable) supervisor, marked ungrounded.
    escalated = [r for r in answer.worker_results if r.model == "openai/fake-large"]
    assert {r.worker for r in escalated} == {r.worker for r in local}
    assert all(r.status == "ok" and not r.grounded for r in escalated)
    assert answer.text.strip()
    failed = [c for c in answer.ledger.calls if c.error]
    assert failed and all(c.attempts == 3 for c in failed if c.role != "supervisor")


async def test_ollama_busy_503_is_retried_and_the_answer_is_ok(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.fail(status=503, message=BUSY, path="/api/chat", times=1)
    answer = (await make_graph().ainvoke({"query": DIRECT_Q}))["answer"]

    assert [r.status for r in answer.worker_results] == ["ok"]
    assert "14 days" in answer.text and not answer.escalated
    chats = fake_ollama.requests_to("/api/chat")
    assert [r.status for r in chats] == [503, 200]
    (row,) = [c for c in answer.ledger.calls if c.role == "worker"]
    assert row.attempts == 2 and row.error == ""
    assert fake_openai.requests == []


async def test_supervisor_500_falls_back_locally_with_one_retry_layer(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail(status=500, message="upstream exploded", times=100)
    answer = (await make_graph().ainvoke({"query": CROSS_Q}))["answer"]

    # plan + synthesize, each tried max_attempts (3) times by tandem and never by the SDK.
    assert len(fake_openai.completions()) == 6
    assert any("could not plan" in n and "router's workers" in n for n in answer.notes)
    assert any("could not synthesize" in n and "joined answers locally" in n for n in answer.notes)
    assert {r.worker for r in answer.worker_results} == {"tenancy", "finance"}
    assert "[tenancy]" in answer.text and "[finance]" in answer.text
    failed = [c for c in answer.ledger.calls if c.role == "supervisor"]
    assert [(c.purpose, c.attempts) for c in failed] == [("plan", 3), ("synthesize", 3)]
    assert all("upstream exploded" in c.error for c in failed)


async def test_supervisor_unreachable_falls_back_locally(make_graph: Any, closed_port: int) -> None:
    api_base = f"http://127.0.0.1:{closed_port}/v1"
    answer = (await make_graph(supervisor={"api_base": api_base}).ainvoke({"query": CROSS_Q}))[
        "answer"
    ]
    assert any("could not plan" in n and "cannot reach the supervisor" in n for n in answer.notes)
    assert any("joined answers locally" in n for n in answer.notes)
    assert all(r.status == "ok" for r in answer.worker_results)
    assert answer.text.strip()


async def test_supervisor_route_unreachable_says_so(make_graph: Any, closed_port: int) -> None:
    api_base = f"http://127.0.0.1:{closed_port}/v1"
    graph = make_graph(supervisor={"api_base": api_base})
    answer = (await graph.ainvoke({"query": "Who painted the Mona Lisa?"}))["answer"]
    assert answer.route.kind == "supervisor"
    assert answer.text.startswith("No answer: the supervisor could not answer")
    assert answer.status == "unanswered"
    assert any("could not answer" in n for n in answer.notes)
