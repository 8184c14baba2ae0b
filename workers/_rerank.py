"""Hybrid passage ranking: the embedding's nearest passages, re-ranked with keyword overlap.

A small embedding model (MiniLM) reads a whole chunk as one vector, so a passage that
names exactly what the question names (*the Housing Standards Office*, *codeine*) can rank
below one that is merely about the same topic. :func:`keyword_rerank` takes the passages
the embedding found (a pool several times ``k``), scores each with BM25 against the
question — term statistics from that pool, so it needs no index beside Chroma's and works
on a store of any size — and ranks them by ``score + weight × bm25 / best bm25``. The
embedding still decides which passages are candidates and dominates the order; keywords
break its near-ties. ``weight = 0`` keeps the embedding's order.

Each passage keeps its embedding ``score`` in its metadata (what the calibration's
retrieval signals read); ``keyword`` records its scaled BM25 (0–1) for the trace and
``rank`` the sum it was ranked by (what a supervisor shown "the best passages" goes by).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from langchain_core.documents import Document

__all__ = ["POOL_FACTOR", "keyword_rerank", "pool_size"]

POOL_FACTOR = 4
"""The embedding search fetches ``POOL_FACTOR × k`` passages (at least 12) to re-rank."""
_MIN_POOL = 12
_K1 = 1.2
_B = 0.75
_STEM = 5
"""Terms are compared on their first five letters (*repair*, *repairs*, *repaired*)."""
_TERM = re.compile(r"\d+(?:[.,]\d+)*|[a-z]+")
_STOP_WORDS = (
    "a an the of to in on for and or is are was be can do does i my me we our you your "
    "it its this that what how much many when which who whom will would should could if "
    "at by from with as not no yes any have has had there their they them he she his her "
    "about after before into than then so"
)
_STOP = frozenset(_STOP_WORDS.split())


def pool_size(k: int) -> int:
    """How many passages to fetch by embedding for a re-ranked top ``k``."""
    return max(POOL_FACTOR * k, _MIN_POOL)


def _terms(text: str) -> list[str]:
    return [t[:_STEM] for t in _TERM.findall(text.lower()) if t not in _STOP]


def _bm25(query: set[str], docs: list[Counter[str]]) -> list[float]:
    """BM25 of each document for the query terms, with document frequencies from ``docs``."""
    n = len(docs)
    avg = sum(sum(d.values()) for d in docs) / n or 1.0
    df = Counter(t for d in docs for t in d)
    out = []
    for d in docs:
        length = sum(d.values())
        score = 0.0
        for t in query:
            tf = d[t]
            if tf:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                score += idf * tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * length / avg))
        out.append(score)
    return out


def keyword_rerank(query: str, docs: Sequence[Document], k: int, weight: float) -> list[Document]:
    """The best ``k`` of ``docs`` (the embedding's candidates, best first, each with its
    ``score`` in the metadata) by embedding score plus ``weight`` × scaled BM25.

    With ``weight`` 0, no query terms or no passages, the embedding's top ``k`` unchanged.
    """
    asked = set(_terms(query))
    if weight <= 0 or not asked or not docs:
        return list(docs[:k])
    bm25 = _bm25(asked, [Counter(_terms(d.page_content)) for d in docs])
    best = max(bm25) or 1.0
    ranked = []
    for doc, lexical in zip(docs, bm25, strict=True):
        meta = dict(doc.metadata)
        meta["keyword"] = round(lexical / best, 4)
        meta["rank"] = round(float(meta["score"]) + weight * lexical / best, 6)
        ranked.append(Document(page_content=doc.page_content, metadata=meta))
    order = sorted(range(len(ranked)), key=lambda i: -float(ranked[i].metadata["rank"]))
    return [ranked[i] for i in order[:k]]
