"""``tandem serve`` in process: the official ``openai`` client against the app, on the fakes.

The client talks to the ASGI app through :class:`StreamingASGITransport` (no socket, but
streamed responses and hang-ups behave as over one); ``tests/test_serve_socket.py`` runs
the real command under uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from starlette.applications import Starlette

from tandem.agents.shell.serve import Outcome, RunRequest, SessionEngine, create_app
from tandem.agents.shell.serve.testing import StreamingASGITransport
from tandem.graphs import Runtime, TandemConfig
from tandem.workers.testing import FakeOllama, FakeOpenAI

KEY = "sk-tandem-test-0123456789"
CHAT = "qwen2.5:1.5b"
DIRECT_Q = "How quickly does Brightwater Lettings return a tenant's deposit?"
USER = [{"role": "user", "content": DIRECT_Q}]


class CountingEngine(SessionEngine):
    """A SessionEngine that counts runs finished and cancelled."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.started = 0
        self.finished = 0
        self.cancelled = 0

    async def run(self, request: RunRequest, on_event: Any) -> Outcome:
        self.started += 1
        try:
            outcome = await super().run(request, on_event)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return outcome


Served = tuple[Starlette, CountingEngine]


@pytest.fixture
def serve(make_config: Callable[..., TandemConfig]) -> Callable[..., Any]:
    """``await serve(keys=…, **config_overrides)`` → (app, engine) on the fakes."""

    async def make(*, keys: tuple[str, ...] = (KEY,), **overrides: Any) -> Served:
        config = make_config(**overrides)
        runtime = Runtime(config)
        await runtime.ensure_ingested()
        engine = CountingEngine(runtime, InMemorySaver())
        return create_app(engine, config.serve, api_keys=keys), engine

    return make


def client(app: Starlette, key: str | None = KEY, **kw: Any) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://tandem")
    return openai.AsyncOpenAI(
        api_key=key or "unused", base_url="http://tandem/v1", http_client=http, **kw
    )


async def _eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    assert check()


async def test_completion_carries_the_answer_usage_and_the_tandem_section(
    serve: Callable[..., Any],
) -> None:
    app, engine = await serve()
    async with client(app) as c:
        raw = await c.chat.completions.with_raw_response.create(
            model="tandem",
            messages=[{"role": "system", "content": "Be brief."}, *USER],
            temperature=0.2,
        )
    completion = raw.parse()
    assert completion.object == "chat.completion" and completion.model == "tandem"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert "14 days" in (choice.message.content or "")
    ext = completion.model_extra["tandem"]
    assert ext["route"]["kind"] == "direct" and ext["route"]["workers"] == ["tenancy"]
    assert [w["worker"] for w in ext["workers"]] == ["tenancy"]
    assert ext["workers"][0]["status"] == "ok" and "answer" not in ext["workers"][0]
    assert ext["citations"] and all(c["worker"] == "tenancy" for c in ext["citations"])
    assert ext["local_share"] == 1.0 and ext["cost_usd"] == 0.0
    assert {"savings_usd", "savings_pct", "counterfactual_usd", "totals"} <= set(ext)
    assert ext["ignored"] == ["temperature"]
    assert any("system/developer message" in n for n in ext["notes"])
    assert "tandem" not in (choice.message.content or "").lower()  # never in the text
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == ext["totals"]["tokens_in"] > 0
    assert usage.completion_tokens == ext["totals"]["tokens_out"] > 0
    assert raw.headers["x-tandem-route"] == "direct; workers=tenancy"
    assert raw.headers["x-tandem-ignored"] == "temperature"
    assert engine.finished == 1


async def test_stream_is_openai_chunks_ending_as_the_answer(serve: Callable[..., Any]) -> None:
    app, _ = await serve()
    async with client(app) as c:
        whole = await c.chat.completions.create(model="tandem", messages=USER)
        raw = await c.chat.completions.with_raw_response.create(
            model="tandem", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        assert raw.headers["content-type"].startswith("text/event-stream")
        assert raw.headers["x-tandem-route"] == "direct; workers=tenancy"
        chunks = [ch async for ch in raw.parse()]
    assert {ch.object for ch in chunks} == {"chat.completion.chunk"}
    assert len({ch.id for ch in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason == "stop"
    ext = finishing[0].model_extra["tandem"]
    assert ext["route"]["workers"] == ["tenancy"] and "text" not in ext  # stream == answer
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == ext["totals"]["tokens_in"] + ext["totals"]["tokens_out"]
    assert all(ch.usage is None for ch in chunks[:-1])


async def test_supervisor_tokens_stream_as_they_come(
    serve: Callable[..., Any], fake_ollama: FakeOllama
) -> None:
    low = {"answer": "not sure", "confidence": 0.1, "citations": [], "needs_escalation": True}
    fake_ollama.script(CHAT, json.dumps(low))
    app, _ = await serve()
    async with client(app) as c:
        stream = await c.chat.completions.create(model="tandem", messages=USER, stream=True)
        pieces = [
            ch.choices[0].delta.content
            async for ch in stream
            if ch.choices and ch.choices[0].delta.content
        ]
    # The escalated draft ("not sure") was held back; the supervisor's text came in pieces.
    assert not "".join(pieces).startswith("not sure")
    assert len(pieces) > 3


async def test_a_forced_specialist_answers_without_routing(serve: Callable[..., Any]) -> None:
    app, _ = await serve()
    async with client(app) as c:
        models = await c.models.list()
        assert [m.id for m in models.data] == [
            "tandem",
            "tandem/finance",
            "tandem/health",
            "tandem/tenancy",
        ] or {m.id for m in models.data} == {
            "tandem",
            "tandem/finance",
            "tandem/health",
            "tandem/tenancy",
        }
        completion = await c.chat.completions.create(model="tandem/finance", messages=USER)
    ext = completion.model_extra["tandem"]
    assert ext["route"]["kind"] == "direct" and ext["route"]["workers"] == ["finance"]
    assert ext["route"]["reason"].startswith("forced")
    assert [w["worker"] for w in ext["workers"]] == ["finance"] and not ext["escalated"]
    assert completion.model == "tandem/finance"


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"stop": ["\n"]}, "stop"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"extra_body": {"frobnicate": True}}, "frobnicate"),
    ],
)
async def test_an_option_tandem_cannot_honour_is_a_400_naming_it(
    serve: Callable[..., Any], options: dict[str, Any], param: str
) -> None:
    app, engine = await serve()
    async with client(app) as c:
        with pytest.raises(openai.BadRequestError) as info:
            await c.chat.completions.create(model="tandem", messages=USER, **options)
    assert info.value.status_code == 400 and info.value.param == param
    body = info.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    assert engine.started == 0


async def test_images_unknown_models_and_bad_messages_are_refused(
    serve: Callable[..., Any],
) -> None:
    app, _ = await serve()
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    async with client(app) as c:
        with pytest.raises(openai.BadRequestError) as info:
            await c.chat.completions.create(
                model="tandem",
                messages=[{"role": "user", "content": [{"type": "text", "text": "?"}, image]}],
            )
        assert info.value.param == "messages[0].content[1].type"
        with pytest.raises(openai.NotFoundError) as missing:
            await c.chat.completions.create(model="tandem/plumbing", messages=USER)
        assert missing.value.code == "model_not_found"
        with pytest.raises(openai.BadRequestError) as last:
            await c.chat.completions.create(
                model="tandem", messages=[*USER, {"role": "assistant", "content": "14 days."}]
            )
        assert last.value.param == "messages"


async def test_a_missing_or_wrong_key_is_a_401(serve: Callable[..., Any]) -> None:
    app, engine = await serve()
    async with httpx.AsyncClient(
        transport=StreamingASGITransport(app), base_url="http://tandem"
    ) as http:
        bare = await http.post("/v1/chat/completions", json={"model": "tandem", "messages": USER})
        assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
        assert bare.json()["error"]["type"] == "invalid_request_error"
        assert (await http.get("/healthz")).status_code == 200  # probes need no key
    async with client(app, key="sk-wrong-key-000000") as c:
        with pytest.raises(openai.AuthenticationError) as info:
            await c.chat.completions.create(model="tandem", messages=USER)
        assert info.value.code == "invalid_api_key"
        assert "sk-wrong" not in info.value.message  # the key is not echoed back
        with pytest.raises(openai.AuthenticationError):
            await c.models.list()
    assert engine.started == 0


async def test_a_client_hanging_up_mid_stream_cancels_the_run(
    serve: Callable[..., Any], fake_ollama: FakeOllama
) -> None:
    app, engine = await serve()
    fake_ollama.latency = 0.3  # every model call: the run is still going when we hang up
    async with client(app) as c:
        stream = await c.chat.completions.create(model="tandem", messages=USER, stream=True)
        first = await stream.__anext__()  # the role chunk: the stream is open
        assert first.choices[0].delta.role == "assistant"
        await stream.close()
        await _eventually(lambda: engine.cancelled == 1)
    server = app.state.server
    assert engine.finished == 0 and not server.runs and server.admission.active == 0


async def test_a_client_giving_up_before_any_output_cancels_the_run(
    serve: Callable[..., Any], fake_ollama: FakeOllama
) -> None:
    app, engine = await serve()
    fake_ollama.latency = 0.5
    async with client(app) as c:
        call = asyncio.ensure_future(c.chat.completions.create(model="tandem", messages=USER))
        await _eventually(lambda: engine.started == 1)
        call.cancel()
        await _eventually(lambda: engine.cancelled == 1)
    assert app.state.server.admission.active == 0


async def test_above_the_concurrency_limit_requests_get_429_with_retry_after(
    serve: Callable[..., Any], fake_ollama: FakeOllama
) -> None:
    app, engine = await serve(serve={"max_concurrent": 1, "queue": 1, "queue_timeout": 5})
    _slow_chat(fake_ollama, 0.15)
    async with client(app, max_retries=0) as c:
        ask = c.chat.completions.create
        running = [asyncio.ensure_future(ask(model="tandem", messages=USER)) for _ in range(2)]
        await _eventually(lambda: app.state.server.admission.waiting == 1)
        with pytest.raises(openai.RateLimitError) as info:
            await ask(model="tandem", messages=USER)
        done = await asyncio.gather(*running)  # one ran, one waited its turn
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert info.value.code == "rate_limit_exceeded"
    assert all("14 days" in (d.choices[0].message.content or "") for d in done)
    assert engine.started == 2


async def test_metrics_count_runs_calls_tokens_and_errors(serve: Callable[..., Any]) -> None:
    app, _ = await serve()
    async with client(app) as c:
        await c.chat.completions.create(model="tandem", messages=USER)
        await c.chat.completions.create(model="tandem/health", messages=USER)
        with pytest.raises(openai.BadRequestError):
            await c.chat.completions.create(model="tandem", messages=USER, n=3)
    async with httpx.AsyncClient(
        transport=StreamingASGITransport(app), base_url="http://tandem"
    ) as http:
        scrape = await http.get("/metrics")
    assert scrape.headers["content-type"].startswith("text/plain")
    text = scrape.text
    assert 'tandem_runs_total{forced="false",route="direct"} 1.0' in text
    assert 'tandem_runs_total{forced="true",route="direct"} 1.0' in text
    assert 'tandem_model_calls_total{outcome="ok",role="worker",where="local"} 2.0' in text
    assert 'tandem_tokens_total{direction="out",role="worker",where="local"}' in text
    assert 'tandem_errors_total{type="unsupported_parameter"} 1.0' in text
    assert 'tandem_http_requests_total{path="/v1/chat/completions",status="200"} 2.0' in text
    assert "tandem_run_duration_seconds_bucket" in text
    for name in ("remote_cost_usd", "savings_usd", "escalations", "runs_in_progress"):
        assert f"tandem_{name}" in text


async def test_threads_keep_the_conversation_and_history_seeds_a_new_one(
    serve: Callable[..., Any],
) -> None:
    app, engine = await serve()
    earlier = [
        {"role": "user", "content": "I rent a flat from Brightwater Lettings."},
        {"role": "assistant", "content": "Noted."},
    ]
    async with client(app) as c:
        ask = c.chat.completions.with_raw_response.create
        t1 = {"thread_id": "t1"}
        first = await ask(model="tandem", messages=[*earlier, *USER], extra_body=t1)
        assert first.headers["x-tandem-thread"] == "t1"
        assert first.parse().model_extra["tandem"]["thread_id"] == "t1"
        # The thread has its own history now: the client may send the new question only;
        # earlier messages it sends anyway are not used (and the response says so).
        second = await ask(
            model="tandem",
            messages=[*earlier, {"role": "user", "content": "And how is it paid back?"}],
            extra_body=t1,
        )
        notes = second.parse().model_extra["tandem"]["notes"]
        assert any("thread t1 has its own history" in n for n in notes)
        stateless = await ask(model="tandem", messages=USER)
        assert "x-tandem-thread" not in stateless.headers
    assert engine.threaded is not None
    state = await engine.threaded.aget_state({"configurable": {"thread_id": "t1"}})
    texts = [str(m.content) for m in state.values["messages"]]
    assert texts[:2] == ["I rent a flat from Brightwater Lettings.", "Noted."]
    assert texts[2] == DIRECT_Q and texts[4] == "And how is it paid back?" and len(texts) == 6


async def test_ask_policy_needs_a_thread_and_resumes_with_the_approval(
    serve: Callable[..., Any], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    low = {"answer": "not sure", "confidence": 0.1, "citations": [], "needs_escalation": True}
    fake_ollama.script(CHAT, json.dumps(low), json.dumps(low))  # threads a1 and a2 escalate
    app, _ = await serve(privacy={"policy": "ask"}, supervisor={"egress": "remote"})
    async with client(app) as c:
        with pytest.raises(openai.BadRequestError) as info:
            await c.chat.completions.create(model="tandem", messages=USER)
        assert info.value.param == "thread_id" and "'ask'" in info.value.message
        paused = await c.chat.completions.with_raw_response.create(
            model="tandem", messages=USER, extra_body={"thread_id": "a1"}
        )
        assert paused.headers["x-tandem-approval"] == "required"
        approval = paused.parse().model_extra["tandem"]["approval"]
        assert approval["kind"] == "egress_approval" and approval["bytes"] > 0
        assert not fake_openai.completions()  # nothing was sent yet
        streamed = await c.chat.completions.create(  # a stream pauses the same way
            model="tandem", messages=USER, stream=True, extra_body={"thread_id": "a2"}
        )
        last = [chunk async for chunk in streamed][-1]
        assert last.choices[0].finish_reason == "stop"
        assert last.model_extra["tandem"]["approval"]["kind"] == "egress_approval"
        with pytest.raises(openai.BadRequestError) as again:
            await c.chat.completions.create(
                model="tandem", messages=USER, extra_body={"thread_id": "a1"}
            )
        assert again.value.param == "approve" and again.value.code == "approval_pending"
        approvals = 0
        while True:  # each remote call (the plan, the synthesis) is approved on its own
            done = await c.chat.completions.create(
                model="tandem", messages=USER, extra_body={"thread_id": "a1", "approve": True}
            )
            approvals += 1
            if "approval" not in done.model_extra["tandem"]:
                break
            assert approvals < 5
    assert len(fake_openai.completions()) == approvals  # one call sent per approval
    ext = done.model_extra["tandem"]
    assert ext["escalated"] and ext["route"]["workers"] == ["tenancy"]
    assert done.choices[0].message.content


async def test_a_request_over_the_body_limit_is_a_413(serve: Callable[..., Any]) -> None:
    app, engine = await serve(serve={"max_body_bytes": 2048})
    async with client(app) as c:
        with pytest.raises(openai.APIStatusError) as info:
            await c.chat.completions.create(
                model="tandem", messages=[{"role": "user", "content": "x" * 5000}]
            )
    assert info.value.status_code == 413 and engine.started == 0


def _slow_chat(fake: FakeOllama, seconds: float) -> None:
    """Chat calls wait ``seconds``; embeddings (routing) stay instant."""
    inner = fake.routes[("POST", "/api/chat")]

    def slow(path: str, body: dict[str, Any]) -> Any:
        time.sleep(seconds)
        return inner(path, body)

    fake.routes[("POST", "/api/chat")] = slow


async def test_the_request_deadline_cancels_the_run(
    serve: Callable[..., Any], fake_ollama: FakeOllama
) -> None:
    app, engine = await serve(serve={"deadline": 0.3, "keepalive": 0.05})
    _slow_chat(fake_ollama, 2.0)  # routing is quick, the worker is not: streams open first
    async with client(app, max_retries=0) as c:
        with pytest.raises(openai.APIStatusError) as info:
            await c.chat.completions.create(model="tandem", messages=USER)
        assert info.value.status_code == 504 and info.value.code == "deadline_exceeded"
        stream = await c.chat.completions.create(model="tandem", messages=USER, stream=True)
        with pytest.raises(openai.APIError) as mid:
            async for _ in stream:
                pass
        assert "deadline" in mid.value.message
    await _eventually(lambda: engine.cancelled == 2)


async def test_requests_on_one_thread_run_one_at_a_time(
    serve: Callable[..., Any], fake_ollama: FakeOllama
) -> None:
    app, _ = await serve()
    fake_ollama.latency = 0.05
    async with client(app) as c:
        questions = [DIRECT_Q, "And how is it paid back?", "Can it be withheld for cleaning?"]
        await asyncio.gather(
            *(
                c.chat.completions.create(
                    model="tandem",
                    messages=[{"role": "user", "content": q}],
                    extra_body={"thread_id": "busy"},
                )
                for q in questions
            )
        )
    engine = app.state.server.engine
    state = await engine.threaded.aget_state({"configurable": {"thread_id": "busy"}})
    texts = [str(m.content) for m in state.values["messages"]]
    assert sorted(texts[0::2]) == sorted(questions) and len(texts) == 6  # no turn lost


async def test_the_same_question_again_resumes_a_thread_run_that_was_stopped(
    serve: Callable[..., Any], fake_ollama: FakeOllama
) -> None:
    app, engine = await serve()
    _slow_chat(fake_ollama, 0.5)  # routing is quick; the worker is still answering
    thread = {"thread_id": "stopped"}
    async with client(app) as c:
        stream = await c.chat.completions.create(
            model="tandem", messages=USER, stream=True, extra_body=thread
        )
        await stream.__anext__()  # routed: the route step is checkpointed
        await stream.close()  # hang up while the worker runs: the run is cancelled
        await _eventually(lambda: engine.cancelled == 1)
        routed = len(fake_ollama.requests_to("/api/embed"))
        again = await c.chat.completions.create(model="tandem", messages=USER, extra_body=thread)
    assert "14 days" in (again.choices[0].message.content or "")
    assert len(fake_ollama.requests_to("/api/embed")) == routed  # routing was not redone
    assert engine.threaded is not None
    state = await engine.threaded.aget_state({"configurable": {"thread_id": "stopped"}})
    assert [str(m.content) for m in state.values["messages"]][0::2] == [DIRECT_Q]  # one turn


async def test_cors_for_browser_chat_uis_only_when_configured(serve: Callable[..., Any]) -> None:
    origin = {"origin": "http://localhost:3000"}
    preflight = {**origin, "access-control-request-method": "POST"}
    for settings, allowed in (({}, None), ({"cors_origins": [origin["origin"]]}, origin["origin"])):
        app, _ = await serve(serve=settings)
        async with httpx.AsyncClient(
            transport=StreamingASGITransport(app), base_url="http://tandem"
        ) as http:
            r = await http.options("/v1/chat/completions", headers=preflight)
            assert r.headers.get("access-control-allow-origin") == allowed


async def test_readiness_and_unknown_paths(serve: Callable[..., Any]) -> None:
    app, _ = await serve()
    async with httpx.AsyncClient(
        transport=StreamingASGITransport(app), base_url="http://tandem"
    ) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        app.state.server.draining = True
        assert (await http.get("/readyz")).status_code == 503
        gone = await http.get("/v1/completions")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_url"
