"""The learning loop through the other front doors: ``tandem serve`` and the router.

Against the fake Ollama (workers, embeddings) and the fake OpenAI-compatible supervisor.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from typing import Any

import httpx
import openai
from langgraph.checkpoint.memory import InMemorySaver

from tandem.agents.shell.serve import SessionEngine, create_app
from tandem.agents.shell.serve.testing import StreamingASGITransport
from tandem.graphs import Runtime, TandemConfig
from tandem.workers.testing import FakeOllama, FakeOpenAI

from .test_learning import ANSWER, MODEL, QUESTION, _answer_from_learned, _escalation

KEY = "sk-tandem-test-0123456789"


async def test_a_served_answer_reports_what_it_taught_and_kept_memory_answers_locally(
    make_config: Callable[..., TandemConfig], fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    runtime = Runtime(make_config())
    await runtime.ensure_ingested()
    app = create_app(SessionEngine(runtime, InMemorySaver()), runtime.config.serve, api_keys=(KEY,))
    http = httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://tandem")
    user: Any = [{"role": "user", "content": QUESTION}]
    async with openai.AsyncOpenAI(
        api_key=KEY, base_url="http://tandem/v1", http_client=http
    ) as client:
        _escalation(fake_ollama, fake_openai)
        first = await client.chat.completions.create(model="tandem", messages=user)
        taught = first.model_extra["tandem"]["learning"]  # type: ignore[index]
        (rid,) = taught["records"]
        assert stat.S_IMODE(runtime.learning.dir.stat().st_mode) == 0o700  # owner only
        assert taught["pending"] == [rid] and taught["kept"] == []
        assert ANSWER.split(",")[0] in (first.choices[0].message.content or "")

        await runtime.learning.keep([rid])  # what `tandem memory keep ID` does
        fake_ollama.respond_with(MODEL, _answer_from_learned(ANSWER, 0.9))
        before = len(fake_openai.completions())
        again = await client.chat.completions.create(model="tandem", messages=user)
    ext = again.model_extra["tandem"]  # type: ignore[index]
    assert len(fake_openai.completions()) == before and not ext["escalated"]
    assert ext["learning"]["used"] == [f"learned:{rid}"]
    assert f"learned:{rid}" in [c["source"] for c in ext["citations"]]
