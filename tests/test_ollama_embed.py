"""Ollama embedding models (``ollama:nomic-embed-text``, ``ollama:embeddinggemma``) through
``/api/embed``: one batched request per call, the documented JSON shapes, used by the router
and every store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem.graphs import Runtime, TandemConfig
from tandem.workers import WorkerStore
from tandem.workers.backends import BackendSettings, OllamaBackend, OllamaSettings, make_backend
from tandem.workers.errors import RunError
from tandem.workers.store import open_client
from tandem.workers.testing import FakeOllama, hash_embed

from .conftest import demo_specs


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama(
        chat_models=("qwen2.5:1.5b",), embed_models=("nomic-embed-text", "embeddinggemma")
    ) as fake:
        yield fake


@pytest.mark.parametrize("model", ["nomic-embed-text", "embeddinggemma"])
async def test_a_batch_is_one_request_with_the_documented_shapes(
    ollama: FakeOllama, model: str
) -> None:
    backend = make_backend(
        f"ollama:{model}", BackendSettings(ollama=OllamaSettings(host=ollama.url))
    )
    texts = ["security deposit limits", "paracetamol dose", "notice period for tenants"]
    result = await backend.embed(texts)

    (request,) = ollama.requests_to("/api/embed")  # one request for the whole batch
    assert request.method == "POST" and request.status == 200
    assert request.body == {"model": model, "input": texts, "keep_alive": "10m"}
    assert result.vectors == [hash_embed(t) for t in texts]  # in input order
    assert result.model == f"ollama:{model}" and result.host == ollama.url
    assert result.tokens_in == 9  # the server's prompt_eval_count (words, in the fake)


async def test_the_response_shape_is_ollamas(ollama: FakeOllama) -> None:
    """What the fake answers is what ``/api/embed`` documents (and what the client parses)."""
    import httpx

    async with httpx.AsyncClient(base_url=ollama.url) as client:
        reply = await client.post(
            "/api/embed", json={"model": "embeddinggemma", "input": ["a cat", "a dog"]}
        )
        single = await client.post("/api/embed", json={"model": "embeddinggemma", "input": "x"})
    body = reply.json()
    assert set(body) == {
        "model",
        "embeddings",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
    }
    assert body["model"] == "embeddinggemma" and len(body["embeddings"]) == 2
    assert all(isinstance(x, float) for x in body["embeddings"][0])
    assert len(single.json()["embeddings"]) == 1  # a string input is one text


async def test_a_chat_model_cannot_embed(ollama: FakeOllama) -> None:
    backend = OllamaBackend("qwen2.5:1.5b", OllamaSettings(host=ollama.url))
    with pytest.raises(RunError, match="does not support embedding"):
        await backend.embed(["x"])


async def test_store_ingestion_batches_its_chunks(ollama: FakeOllama, tmp_path: Path) -> None:
    store = WorkerStore(
        "tenancy",
        open_client(tmp_path / "stores"),
        OllamaBackend("embeddinggemma", OllamaSettings(host=ollama.url)),
    )
    corpus = demo_specs()[0].knowledge[0]
    report = await store.ingest([corpus], batch=8)
    requests = ollama.requests_to("/api/embed")
    sizes = [len(r.body["input"]) for r in requests]
    assert sum(sizes) == report.added == await store.count()
    assert max(sizes) <= 8 and len(requests) >= report.files
    assert {r.body["model"] for r in requests} == {"embeddinggemma"}


async def test_configured_ollama_model_serves_router_and_stores(
    ollama: FakeOllama, tmp_path: Path
) -> None:
    config = TandemConfig(
        ollama={"host": ollama.url},
        supervisor={"model": "openai/fake-large", "api_base": "http://127.0.0.1:9/v1"},
        router={"embed_model": "ollama:embeddinggemma"},
        workers=demo_specs(),
        data_dir=tmp_path,
    )
    runtime = Runtime(config)
    await runtime.ensure_ingested(["tenancy"])
    decision, vector = await runtime.router.decide("How much deposit can my landlord ask for?")
    assert decision.workers[0] == "tenancy" and len(vector) == 256
    assert await runtime.stores["tenancy"].embedding_model() == ("ollama:embeddinggemma", 256)
    assert {r.body["model"] for r in ollama.requests_to("/api/embed")} == {"embeddinggemma"}
