"""Find the passage sentences that answer the question's specific ask (for ``ask_support``).

The lexical pre-selection (:func:`tandem.workers.grounding.ask_sentences`, the
:data:`POOL` sentences sharing most content words with the question) is re-ranked by
cosine similarity to the question under the worker's own embedder, and the best
:data:`TOP` are kept. On the bundled models this finds the ask better than word overlap
alone (cross-validated AUROC of ``p_correct`` 0.84 against 0.81 with the shipped signals,
benchmarks/RESULTS.md §12) and costs one embedding call of at most ``POOL + 1`` short
texts: about 0.15 s with MiniLM on two busy cores when none is cached (2 % of a 0.5B
worker call), much less with the cache below (the same corpus sentences come back run
after run).

Only a local embedder is asked: the sentences went to it when the corpus was indexed, but
a remote one would see this run's passages again, so with a remote embedder (or none, or
one that fails) the lexical ranking is used as it is.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from tandem.workers.backends import Backend, EmbedResult, cosine
from tandem.workers.errors import RunError
from tandem.workers.grounding import ask_sentences

__all__ = ["POOL", "TOP", "clear_cache", "rank_ask_sentences"]

POOL = 8
"""Sentences pre-selected by word overlap with the question."""
TOP = 2
"""Sentences kept after re-ranking by embedding similarity."""
_CACHE_SIZE = 4096
_CACHE: OrderedDict[tuple[str, str], list[float]] = OrderedDict()


def clear_cache() -> None:
    """Forget the cached sentence vectors (for measurements of the uncached cost)."""
    _CACHE.clear()


async def rank_ask_sentences(
    embedder: Backend | None,
    question: str,
    passages: Sequence[str],
    *,
    on_embed: Callable[[EmbedResult, float], None] | None = None,
) -> list[str]:
    """The :data:`TOP` passage sentences most likely to hold the answer to ``question``
    (``on_embed(result, seconds)`` is told of the embedding call, for the ledger)."""
    pool = ask_sentences(question, passages, POOL)
    if embedder is None or embedder.where != "local" or len(pool) <= TOP:
        return pool[:TOP]
    texts = [question, *pool]
    known = {t: _CACHE.get((embedder.ref, t)) for t in texts}
    missing = [t for t, v in known.items() if v is None]
    if missing:
        started = time.perf_counter()
        try:
            result = await embedder.embed(missing)
        except (RunError, ValueError):
            return pool[:TOP]
        if on_embed is not None:
            on_embed(result, time.perf_counter() - started)
        if len(result.vectors) != len(missing):
            return pool[:TOP]
        for text, vector in zip(missing, result.vectors, strict=True):
            known[text] = _CACHE[(embedder.ref, text)] = vector
            if len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    q = known[question] or []
    sims = [cosine(q, known[t] or []) for t in pool]
    order = sorted(range(len(pool)), key=lambda i: (-sims[i], i))
    return [pool[i] for i in order[:TOP]]
