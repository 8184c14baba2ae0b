"""Hybrid passage ranking: keyword overlap breaks the embedding's near-ties, never its clear
choices (workers/_rerank.py), and the store applies it when given the question's text."""

from __future__ import annotations

from pathlib import Path

from langchain_core.documents import Document

from tandem.workers._rerank import keyword_rerank, pool_size
from tandem.workers.backends import OllamaBackend, OllamaSettings
from tandem.workers.store import WorkerStore, open_client
from tandem.workers.testing import FakeOllama

QUESTION = "How soon does the Housing Standards Office inspect after I report damp?"
CHECK_IN = Document(
    page_content="At check-in the landlord and tenant agree an inventory of the flat's condition.",
    metadata={"source": "inventory.md", "score": 0.50},
)
OFFICE = Document(
    page_content="A tenant can report the problem to the Housing Standards Office, which "
    "inspects within 10 working days.",
    metadata={"source": "repairs.md", "score": 0.48},
)
DEPOSIT = Document(
    page_content="The deposit is returned within 21 days of the end of the tenancy.",
    metadata={"source": "deposit.md", "score": 0.45},
)


def test_the_passage_naming_what_the_question_names_wins_a_near_tie() -> None:
    top = keyword_rerank(QUESTION, [CHECK_IN, OFFICE, DEPOSIT], 2, 0.1)
    assert [d.metadata["source"] for d in top] == ["repairs.md", "inventory.md"]
    # the embedding score the retrieval signals read is kept; the keyword score is shown
    assert top[0].metadata["score"] == 0.48
    assert top[0].metadata["keyword"] == 1.0
    assert top[1].metadata["keyword"] < 1.0


def test_keywords_do_not_overturn_a_clear_embedding_choice() -> None:
    clear = Document(page_content=CHECK_IN.page_content, metadata={"source": "a", "score": 0.8})
    far = Document(page_content=OFFICE.page_content, metadata={"source": "b", "score": 0.4})
    assert [d.metadata["source"] for d in keyword_rerank(QUESTION, [clear, far], 1, 0.1)] == ["a"]


def test_weight_zero_or_no_content_words_keeps_the_embedding_order() -> None:
    docs = [CHECK_IN, OFFICE, DEPOSIT]
    assert keyword_rerank(QUESTION, docs, 2, 0.0) == docs[:2]
    assert keyword_rerank("what is it?", docs, 3, 0.1) == docs
    assert keyword_rerank(QUESTION, [], 3, 0.1) == []
    assert pool_size(3) == 12 and pool_size(5) == 20


async def test_the_store_ranks_by_keywords_when_given_the_question(
    tmp_path: Path, fake_ollama: FakeOllama
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for doc in (CHECK_IN, OFFICE, DEPOSIT):
        (docs / doc.metadata["source"]).write_text(doc.page_content, encoding="utf-8")
    embedder = OllamaBackend("nomic-embed-text", OllamaSettings(host=fake_ollama.url))
    store = WorkerStore("tenancy", open_client(tmp_path / "store"), embedder)
    await store.ingest([docs])
    vector = (await embedder.embed(["flat condition inventory check-in"])).vectors[0]

    plain = await store.search(vector, 3)
    assert "keyword" not in plain[0].metadata
    hybrid = await store.search(vector, 3, query=QUESTION, keyword_weight=1.0)
    assert hybrid[0].metadata["source"] == "repairs.md"
    assert {d.metadata["source"] for d in hybrid} == {d.metadata["source"] for d in plain}
