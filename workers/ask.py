"""Where in the passages the question's ask is answered, under the worker's own embedder.

Two signals of :mod:`tandem.workers.signals` come from here:

* :func:`rank_ask_sentences` (for ``ask_support``): the lexical pre-selection
  (:func:`tandem.workers.grounding.ask_sentences`, the :data:`POOL` sentences sharing most
  content words with the question) is re-ranked by cosine similarity to the question, and
  the best :data:`TOP` are kept. On the bundled models this finds the ask better than
  word overlap alone (cross-validated AUROC of ``p_correct`` 0.84 against 0.81 with the
  shipped signals, benchmarks/RESULTS.md §12).
* :func:`answer_locus` (``answer_locus``): the cosine similarity of the question to the
  passage sentence that holds the answer (:func:`tandem.workers.grounding.answer_sentences`,
  the best of them when several do). A small model that copies a true figure from a
  sentence about something else — the 21-day return deadline for the adjudicator's
  28 days — gets a low value, graded rather than the yes/no of ``ask_support``.

Both cost one embedding call of a few short texts: about 0.15 s with MiniLM on two busy
cores when none is cached (2 % of a 0.5B worker call), much less with the cache below
(the same corpus sentences come back run after run).

Only a local embedder is asked: the sentences went to it when the corpus was indexed, but
a remote one would see this run's passages again, so with a remote embedder (or none, or
one that fails) the lexical ranking is used as it is and ``answer_locus`` is unknown.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from tandem.workers.backends import Backend, EmbedResult, cosine
from tandem.workers.errors import RunError
from tandem.workers.grounding import (
    answer_sentences,
    ask_overlap,
    ask_sentences,
    asked_kind,
    find_spans,
)

__all__ = [
    "POOL",
    "TOP",
    "answer_locus",
    "clear_cache",
    "evidence",
    "locate",
    "rank_ask_sentences",
]

POOL = 8
"""Sentences pre-selected by word overlap with the question."""
TOP = 2
"""Sentences kept after re-ranking by embedding similarity."""
OVERLAP_WEIGHT = 0.3
"""Weight of word overlap next to cosine similarity in :func:`evidence`'s ranking."""
KIND_WEIGHT = 0.2
"""Bonus in :func:`evidence`'s ranking for a sentence stating the kind of quantity asked."""
_CACHE_SIZE = 4096
_CACHE: OrderedDict[tuple[str, str], list[float]] = OrderedDict()

OnEmbed = Callable[[EmbedResult, float], None]
"""Told of each embedding call made (its result and seconds), for the run's ledger."""


def clear_cache() -> None:
    """Forget the cached sentence vectors (for measurements of the uncached cost)."""
    _CACHE.clear()


async def _vectors(
    embedder: Backend | None, texts: Sequence[str], on_embed: OnEmbed | None
) -> list[list[float]] | None:
    """The vectors of ``texts`` from a local embedder (cached); ``None`` when there is no
    local embedder or it fails."""
    if embedder is None or embedder.where != "local":
        return None
    known = {t: _CACHE.get((embedder.ref, t)) for t in texts}
    missing = [t for t, v in known.items() if v is None]
    if missing:
        started = time.perf_counter()
        try:
            result = await embedder.embed(missing)
        except (RunError, ValueError):
            return None
        if on_embed is not None:
            on_embed(result, time.perf_counter() - started)
        if len(result.vectors) != len(missing):
            return None
        for text, vector in zip(missing, result.vectors, strict=True):
            known[text] = _CACHE[(embedder.ref, text)] = vector
            if len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return [known[t] or [] for t in texts]


async def rank_ask_sentences(
    embedder: Backend | None,
    question: str,
    passages: Sequence[str],
    *,
    on_embed: OnEmbed | None = None,
    top: int = TOP,
) -> list[str]:
    """The ``top`` passage sentences most likely to hold the answer to ``question``
    (``on_embed(result, seconds)`` is told of the embedding call, for the ledger); when
    the word-overlap pool holds no more than ``top``, that pool as it is, without an
    embedding call."""
    pool = ask_sentences(question, passages, POOL)
    if len(pool) <= top:
        return pool
    sims = await _similarities(embedder, question, pool, on_embed)
    if sims is None:
        return pool[:top]
    order = sorted(range(len(pool)), key=lambda i: (-sims[i], i))
    return [pool[i] for i in order[:top]]


async def _similarities(
    embedder: Backend | None, question: str, texts: Sequence[str], on_embed: OnEmbed | None
) -> list[float] | None:
    """Cosine similarity of ``question`` to each text under a local embedder (``None``
    without one)."""
    vectors = await _vectors(embedder, [question, *texts], on_embed)
    if vectors is None:
        return None
    return [cosine(vectors[0], v) for v in vectors[1:]]


async def evidence(
    embedder: Backend | None,
    question: str,
    passages: Sequence[str],
    n: int,
    *,
    on_embed: OnEmbed | None = None,
) -> list[tuple[int, str]]:
    """The ``n`` passage sentences that match ``question`` best, best first, each with the
    index of the passage it is from — quoted to a model after the passages as a hint where
    the answer is (a small model tends to answer with the first figure it reads). Headings
    ("Deposit limits and protection") are not sentences; an empty passage gives none.

    The :data:`POOL` sentences sharing most content words with the question are ranked by
    cosine similarity plus :data:`OVERLAP_WEIGHT` × the share of the question's content
    words they hold plus :data:`KIND_WEIGHT` when they state the kind of quantity asked
    for (``asked_kind``: "how long" → a duration); without a local embedder, by the
    last two alone."""
    if n <= 0 or not any(passages):
        return []
    pool = ask_sentences(question, passages, POOL)
    sims = await _similarities(embedder, question, pool, on_embed) if len(pool) > 1 else None
    kind = asked_kind(question)

    def score(i: int) -> float:
        held = ask_overlap(question, pool[i])
        stated = kind is not None and any(s.kind == kind for s in find_spans(pool[i]))
        return (sims[i] if sims else 0.0) + OVERLAP_WEIGHT * held + KIND_WEIGHT * stated

    out: list[tuple[int, str]] = []
    for i in sorted(range(len(pool)), key=lambda i: (-score(i), i)):
        where = next((j for j, text in enumerate(passages) if pool[i] in text), None)
        if where is not None and _stated(pool[i]):
            out.append((where, pool[i]))
        if len(out) == n:
            break
    return out


def _stated(sentence: str) -> bool:
    """A sentence that states something (it ends like one), not a heading."""
    return sentence.rstrip().endswith((".", "!", "?", ":", ";", '"', ")"))


async def answer_locus(
    embedder: Backend | None,
    question: str,
    answer: str,
    passages: Sequence[str],
    *,
    on_embed: OnEmbed | None = None,
) -> float | None:
    """Cosine similarity of ``question`` to the passage sentence that holds ``answer`` (the
    closest when several do); ``None`` when none does, the answer says "not covered", or
    there is no local embedder."""
    held = list(dict.fromkeys(answer_sentences(answer, passages)))
    if not held:
        return None
    vectors = await _vectors(embedder, [question, *held], on_embed)
    if vectors is None:
        return None
    return max(cosine(vectors[0], v) for v in vectors[1:])


async def locate(
    embedder: Backend | None,
    question: str,
    answer: str,
    passages: Sequence[str],
    *,
    on_embed: OnEmbed | None = None,
) -> tuple[list[str], float | None]:
    """What a worker's signals need from its embedder: the passage sentences that answer the
    ask (:func:`rank_ask_sentences`) and the answer's locus (:func:`answer_locus`)."""
    found = await rank_ask_sentences(embedder, question, passages, on_embed=on_embed)
    locus = await answer_locus(embedder, question, answer, passages, on_embed=on_embed)
    return found, locus
