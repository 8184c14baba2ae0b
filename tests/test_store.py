"""Per-worker Chroma stores: idempotent ingestion, change tracking, errors, reopening."""

from __future__ import annotations

from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings

from tandem.workers import StoreError, WorkerStore
from tandem.workers.backends import OllamaBackend, OllamaSettings
from tandem.workers.store import chunk_text, open_client
from tandem.workers.testing import FakeOllama

DEPOSITS = """# Deposits

A landlord may ask for a security deposit of at most six weeks' rent.

The deposit must be protected in a government scheme within 30 days of receiving it.

At the end of the tenancy the deposit is returned within 21 days, minus agreed deductions.

Disputes about deductions go to the free adjudication service of the scheme.
"""
PETS = "Tenants may keep a cat or a small dog unless the tenancy agreement forbids pets."


def _embedder(fake: FakeOllama) -> OllamaBackend:
    return OllamaBackend("nomic-embed-text", OllamaSettings(host=fake.url))


def _corpus(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "deposits.md").write_text(DEPOSITS, encoding="utf-8")
    (docs / "sub" / "pets.txt").write_text(PETS, encoding="utf-8")
    (docs / "scan.pdf").write_bytes(b"%PDF-1.7")  # inside a folder: silently not ours
    return docs


async def test_ingest_counts_then_reingest_skips_everything(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    docs = _corpus(tmp_path)
    store = WorkerStore(
        "tenancy", open_client(tmp_path / "store"), _embedder(fake_ollama), chunk_size=120
    )
    assert await store.count() == 0

    first = await store.ingest([docs])
    assert first.files == 2
    assert first.added == await store.count() >= 3  # the markdown file spans several chunks
    assert (first.skipped, first.removed, first.errors) == (0, 0, [])

    fake_ollama.reset()
    again = await store.ingest([docs])
    assert (again.files, again.added, again.skipped, again.removed) == (2, 0, first.added, 0)
    assert await store.count() == first.added
    assert fake_ollama.requests_to("/api/embed") == []  # nothing re-embedded


async def test_modified_file_is_updated_and_stale_chunks_removed(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    docs = _corpus(tmp_path)
    store = WorkerStore(
        "tenancy", open_client(tmp_path / "store"), _embedder(fake_ollama), chunk_size=120
    )
    first = await store.ingest([docs])
    before = await store.count()

    (docs / "deposits.md").write_text("# Deposits\n\nDeposits are capped at 4 weeks.\n")
    report = await store.ingest([docs])
    assert report.added == 1  # the changed first chunk
    assert report.skipped == 1  # pets.txt
    assert report.removed == first.added - 2  # deposits.md shrank to one chunk
    assert await store.count() == before - report.removed

    vector = (await _embedder(fake_ollama).embed(["deposits capped weeks"])).vectors[0]
    top = (await store.search(vector, 1))[0]
    assert "4 weeks" in top.page_content and "six weeks" not in top.page_content
    assert top.metadata["source"] == "deposits.md" and top.metadata["worker"] == "tenancy"


async def test_unsupported_and_missing_paths_are_reported_not_raised(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    docs = _corpus(tmp_path)
    loose_pdf = tmp_path / "contract.pdf"
    loose_pdf.write_bytes(b"%PDF-1.7")
    missing = tmp_path / "nowhere"
    store = WorkerStore("tenancy", open_client(tmp_path / "store"), _embedder(fake_ollama))

    report = await store.ingest([docs, loose_pdf, missing])
    assert report.files == 2 and report.added > 0
    assert len(report.errors) == 2
    unsupported, absent = sorted(report.errors)
    assert str(loose_pdf) in unsupported and "unsupported file type '.pdf'" in unsupported
    assert str(missing) in absent and "no such file" in absent


async def test_search_returns_best_passages_with_sources(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    store = WorkerStore("tenancy", open_client(tmp_path / "store"), _embedder(fake_ollama))
    await store.ingest([_corpus(tmp_path)])
    vector = (await _embedder(fake_ollama).embed(["can I keep a cat or dog"])).vectors[0]
    docs = await store.search(vector, 2)
    assert len(docs) == 2
    assert docs[0].metadata["source"] == "sub/pets.txt"
    assert docs[0].metadata["score"] > docs[1].metadata["score"]


async def test_reopened_store_uses_the_registered_embedding_function(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    path = tmp_path / "store"
    store = WorkerStore("tenancy", open_client(path), _embedder(fake_ollama))
    added = (await store.ingest([_corpus(tmp_path)])).added

    # A brand-new client on the same directory, with no embedding function given: Chroma must
    # rebuild tandem's from the stored config (its default would download an ONNX model).
    client = chromadb.PersistentClient(
        path=str(path), settings=Settings(anonymized_telemetry=False)
    )
    collection = client.get_collection("tandem-tenancy")
    assert collection.count() == added
    fake_ollama.reset()
    res = collection.query(query_texts=["security deposit six weeks"], n_results=1)
    assert res["metadatas"][0][0]["source"] == "deposits.md"
    (embed,) = [r.body for r in fake_ollama.requests_to("/api/embed")]
    assert embed["model"] == "nomic-embed-text"
    assert embed["input"] == ["security deposit six weeks"]

    # And a tandem store opened on that client finds the same passages.
    reopened = WorkerStore("tenancy", client, _embedder(fake_ollama))
    assert await reopened.count() == added
    vector = (await _embedder(fake_ollama).embed(["keep a cat"])).vectors[0]
    assert (await reopened.search(vector, 1))[0].metadata["source"] == "sub/pets.txt"


async def test_store_errors_are_translated(tmp_path: Path, fake_ollama: FakeOllama) -> None:
    store = WorkerStore("tenancy", open_client(tmp_path / "store"), _embedder(fake_ollama))
    await store.ingest([_corpus(tmp_path)])
    with pytest.raises(StoreError) as info:
        await store.search([0.1, 0.2], 1)  # wrong dimension for this collection
    assert info.value.worker == "tenancy" and "tandem-tenancy" in str(info.value)


def test_chunk_text_repeats_the_title_and_respects_the_size() -> None:
    chunks = chunk_text(DEPOSITS, size=120)
    assert len(chunks) >= 3
    assert all(c.startswith("Deposits\n") for c in chunks)
    assert all(len(c) <= 120 for c in chunks)
    body = " ".join(c.removeprefix("Deposits\n") for c in chunks)
    assert "six weeks' rent" in body and "adjudication service" in body
    assert chunk_text("no title, one line") == ["no title, one line"]
