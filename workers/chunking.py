"""Split documents into retrieval chunks that keep words and sentences whole.

A document is cut into *blocks* (paragraphs; list items and headings are blocks of
their own), blocks into sentences. Chunks are packed greedily from whole blocks,
then whole sentences; only a sentence longer than a whole chunk is split, between
words (and only a "word" longer than a chunk is cut inside). A chunk that is at
least half full closes at a paragraph boundary rather than taking the first
sentences of the next paragraph. Every chunk after the first starts with the last
sentence of the chunk before it (a small overlap, when that sentence is short), so
a fact that straddles a boundary is whole in one of them.

Sizes are measured in the embedding model's own tokens when it can count them (see
:class:`~tandem.workers.backends.TokenMeasure`; MiniLM: 254 content tokens plus
``[CLS]``/``[SEP]`` = its 256-token window), else estimated conservatively from
characters, or in plain characters when a character size is given. A leading
``# Title`` line is repeated at the top of every chunk, and counts against the size.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "CHARS_PER_TOKEN",
    "CHUNKER_VERSION",
    "DEFAULT_WINDOW",
    "TokenCounter",
    "chunk_text",
    "estimate_tokens",
    "split_sentences",
]

TokenCounter = Callable[[Sequence[str]], list[int]]
"""Measures texts: one size per text, in the unit the budget is given in."""

CHUNKER_VERSION = 2
"""Bumped when the chunking rules change (stores re-ingest their knowledge)."""
DEFAULT_WINDOW = 254
"""Content tokens per chunk when the embedder cannot say (MiniLM's 256 minus 2 specials)."""
CHARS_PER_TOKEN = 3.0
"""Conservative estimate (English word pieces average ~4 characters)."""

_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_BLOCK_LINE = re.compile(r"^\s*(?:[-*+•]\s|\d+[.)]\s|#{1,6}\s|\|)")
_PARAGRAPHS = re.compile(r"\n\s*\n")


def estimate_tokens(texts: Sequence[str]) -> list[int]:
    """Token counts estimated from characters (never fewer than the true count for
    WordPiece-style English, by a safe margin)."""
    return [math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts]


def _char_count(texts: Sequence[str]) -> list[int]:
    return [len(t) for t in texts]


def split_sentences(text: str) -> list[str]:
    """Sentences of one paragraph (whitespace-normalised), in order."""
    text = " ".join(text.split())
    return [s for s in _SENTENCE_END.split(text) if s] if text else []


def _blocks(body: str) -> list[str]:
    """Paragraphs, with list items, table rows and headings as blocks of their own."""
    blocks: list[str] = []
    for para in _PARAGRAPHS.split(body):
        current: list[str] = []
        for line in para.split("\n"):
            if not line.strip():
                continue
            if current and _BLOCK_LINE.match(line):
                blocks.append(" ".join(current))
                current = []
            current.append(line.strip())
        if current:
            blocks.append(" ".join(current))
    return blocks


@dataclass
class _Unit:
    text: str
    cost: int
    block: int
    whole: bool
    """A whole sentence (it may overlap into the next chunk), not a piece of one."""


class _Packer:
    """Greedy packing of units into chunks of at most ``budget``."""

    def __init__(self, budget: int, sep: int, overlap_cap: int) -> None:
        self.budget = budget
        self.sep = sep
        self.overlap_cap = overlap_cap
        self.chunks: list[list[_Unit]] = []
        self.current: list[_Unit] = []
        self.used = 0
        self.carried: _Unit | None = None
        """The previous chunk's last sentence, opening the current chunk."""

    def fits(self, cost: int) -> bool:
        return self.used + (self.sep if self.current else 0) + cost <= self.budget

    def add(self, unit: _Unit) -> None:
        self.used += (self.sep if self.current else 0) + unit.cost
        self.current.append(unit)

    def only_carried(self) -> bool:
        """Whether the current chunk holds nothing but the overlap."""
        return len(self.current) == 1 and self.current[0] is self.carried

    def _reset(self) -> None:
        self.current, self.used, self.carried = [], 0, None

    def close(self) -> None:
        """End the current chunk; the next one opens with its last sentence if short."""
        if not self.current or self.only_carried():
            return
        self.chunks.append(self.current)
        last = self.current[-1]
        self._reset()
        if last.whole and last.cost <= self.overlap_cap and len(self.chunks[-1]) > 1:
            self.add(last)
            self.carried = last

    def place(self, unit: _Unit) -> None:
        if not self.fits(unit.cost):
            if self.only_carried():
                self._reset()  # overlap + this unit do not fit: drop the overlap
            else:
                self.close()
                if not self.fits(unit.cost):
                    self._reset()
        self.add(unit)

    def finish(self) -> list[list[_Unit]]:
        if self.current and not self.only_carried():
            self.chunks.append(self.current)
        self._reset()
        return self.chunks


def _pieces(words: list[str], costs: list[int], budget: int, sep: int) -> list[tuple[str, int]]:
    """Pack the words of an over-long sentence into pieces of at most ``budget``."""
    pieces: list[tuple[str, int]] = []
    current: list[str] = []
    used = 0
    for word, cost in zip(words, costs, strict=True):
        if cost > budget:  # a "word" longer than a chunk (a URL, a hash): cut it
            if current:
                pieces.append((" ".join(current), used))
                current, used = [], 0
            for i in range(0, len(word), budget):
                part = word[i : i + budget]
                pieces.append((part, min(cost, len(part))))
            continue
        extra = (sep if current else 0) + cost
        if current and used + extra > budget:
            pieces.append((" ".join(current), used))
            current, used = [], 0
            extra = cost
        current.append(word)
        used += extra
    if current:
        pieces.append((" ".join(current), used))
    return pieces


def chunk_text(
    text: str,
    *,
    size: int | None = None,
    max_tokens: int = DEFAULT_WINDOW,
    count_tokens: TokenCounter | None = None,
    overlap: bool = True,
) -> list[str]:
    """Split a document into chunks that never cut a word and rarely a sentence.

    Args:
        text: The document (plain text or Markdown).
        size: A budget in *characters* per chunk; when given it replaces the token budget.
        max_tokens: The token budget per chunk (title included, special tokens excluded).
        count_tokens: Counts tokens with the embedding model's tokenizer; ``None`` estimates
            from characters (:data:`CHARS_PER_TOKEN`).
        overlap: Start each chunk with the last sentence of the previous one (when that
            sentence is at most a third of the budget).

    Returns:
        The chunks, each starting with the document's title line when it has one.
    """
    measure: TokenCounter
    if size is not None:
        limit, measure, sep = size, _char_count, 1
    else:
        limit, measure, sep = max_tokens, count_tokens or estimate_tokens, 0
    text = text.replace("\r\n", "\n").strip()
    title = ""
    first, _, rest = text.partition("\n")
    if first.startswith("#"):
        title, text = first.lstrip("#").strip(), rest.strip()
    head = measure([title])[0] + 1 if title else 0  # +1: the line break (a char, or a margin)
    if title and limit - head < limit // 2:  # an absurdly long title: not repeated
        text, title, head = f"{title}\n\n{text}", "", 0
    budget = limit - head
    blocks = [split_sentences(b) for b in _blocks(text)]
    flat = [s for sentences in blocks for s in sentences]
    costs = iter(measure(flat)) if flat else iter(())
    packer = _Packer(budget, sep, budget // 3 if overlap else -1)
    for index, sentences in enumerate(blocks):
        units: list[_Unit] = []
        for sentence in sentences:
            cost = next(costs)
            if cost <= budget:
                units.append(_Unit(sentence, cost, index, True))
                continue
            words = sentence.split(" ")
            for piece, piece_cost in _pieces(words, measure(words), budget, sep):
                units.append(_Unit(piece, piece_cost, index, False))
        whole = sum(u.cost for u in units) + sep * max(len(units) - 1, 0)
        if packer.current and not packer.fits(whole) and packer.used * 2 >= budget:
            packer.close()  # half full: end at the paragraph boundary
        for unit in units:
            packer.place(unit)
    chunks = [_join(units) for units in packer.finish()]
    if not chunks and title:
        return [title]
    return [f"{title}\n{c}" if title else c for c in chunks]


def _join(units: list[_Unit]) -> str:
    out = units[0].text
    for prev, unit in itertools.pairwise(units):
        out += (" " if unit.block == prev.block else "\n") + unit.text
    return out
