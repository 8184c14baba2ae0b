"""The centroid router (``[router] kind = "centroid"``): the router before the learned one.

Each worker's profile (its description and example questions) is embedded once
and cached (in memory and, given a path, on disk). Small embedding models put
every text in a narrow cone, so raw cosines are all high; the router therefore
*centres* the space on the mean profile vector and compares a query with each
worker's centroid. On the built-in routing set (benchmarks/data/routing.jsonl)
with the bundled 0.5B embeddings this took single-domain top-1 accuracy from
34/45 (best-example cosine) to 44/45. Complexity signals then decide between
answering directly and planning: several workers close together at the top, or a
multi-part question whose parts land on different workers.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path

from tandem.agents.router.settings import RouteDecision, RoutePart, RouterSettings
from tandem.workers.backends import Backend
from tandem.workers.records import CallRecord
from tandem.workers.spec import WorkerSpec
from tandem.workers.telemetry import call_finished

__all__ = ["CentroidRouter", "split_parts"]


_PART_SPLIT = re.compile(r"(?<=[?])\s+|;\s+|\.\s+(?:And|Also|Plus)\b|\s+(?:and also|as well as)\s+")


def split_parts(query: str) -> list[str]:
    """Split a multi-part question into its parts ("…? And …?", "…; …")."""
    parts = [p.strip(" ,.") for p in _PART_SPLIT.split(query)]
    return [p for p in parts if len(p.split()) >= 3]


def _unit(v: Sequence[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v] if n else list(v)


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=False))


class CentroidRouter:
    """Scores queries against worker profiles with local embeddings.

    Args:
        workers: The registered workers.
        embedder: Embedding backend (local).
        settings: Thresholds.
        cache_path: A JSON file caching profile embeddings across processes.
    """

    def __init__(
        self,
        workers: Sequence[WorkerSpec],
        embedder: Backend,
        settings: RouterSettings,
        *,
        cache_path: Path | None = None,
    ) -> None:
        self.workers = list(workers)
        self.embedder = embedder
        self.settings = settings
        self.cache_path = cache_path
        self._centroids: dict[str, list[float]] | None = None
        self._mean: list[float] = []

    def _call(self, tokens: int, seconds: float, purpose: str) -> CallRecord:
        return call_finished(
            CallRecord(
                role="embed",
                model=self.embedder.ref,
                where=self.embedder.where,
                tokens_in=tokens,
                seconds=seconds,
                host=self.embedder.host,
                purpose=purpose,
            )
        )

    def _load_cache(self) -> dict[str, list[float]]:
        if self.cache_path is None or not self.cache_path.exists():
            return {}
        try:
            data = json.loads(self.cache_path.read_text())
        except (OSError, ValueError):
            return {}
        if data.get("model") != self.embedder.ref:
            return {}
        return {str(k): list(v) for k, v in data.get("vectors", {}).items()}

    def _save_cache(self, vectors: dict[str, list[float]]) -> None:
        if self.cache_path is None:
            return
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"model": self.embedder.ref, "vectors": vectors}))
            tmp.replace(self.cache_path)
        except OSError:
            pass  # a cache that cannot be written only costs time

    async def profiles(self, calls: list[CallRecord] | None = None) -> dict[str, list[float]]:
        """Each worker's centroid in the centred embedding space (computed once)."""
        if self._centroids is not None:
            return self._centroids
        texts: dict[str, list[str]] = {w.name: [w.description, *w.examples] for w in self.workers}
        key = {t: hashlib.sha256(t.encode()).hexdigest()[:24] for ts in texts.values() for t in ts}
        cache = self._load_cache()
        missing = [t for t in key if key[t] not in cache]
        if missing:
            started = time.perf_counter()
            res = await self.embedder.embed(missing)
            if calls is not None:
                calls.append(self._call(res.tokens_in, time.perf_counter() - started, "profiles"))
            for text, vec in zip(missing, res.vectors, strict=True):
                cache[key[text]] = vec
            self._save_cache({key[t]: cache[key[t]] for t in key})
        vectors = {name: [_unit(cache[key[t]]) for t in ts] for name, ts in texts.items()}
        every = [v for vs in vectors.values() for v in vs]
        dim = len(every[0]) if every else 0
        centre = len(self.workers) > 1
        self._mean = [sum(v[i] for v in every) / len(every) for i in range(dim)] if centre else []
        centroids = {}
        for name, vs in vectors.items():
            shifted = [self._centred(v) for v in vs]
            centroids[name] = _unit([sum(v[i] for v in shifted) / len(shifted) for i in range(dim)])
        self._centroids = centroids
        return centroids

    def _centred(self, vec: Sequence[float]) -> list[float]:
        unit = _unit(vec)
        if not self._mean:
            return unit
        return _unit([x - m for x, m in zip(unit, self._mean, strict=True)])

    def _scores(self, vec: Sequence[float], centroids: dict[str, list[float]]) -> dict[str, float]:
        q = self._centred(vec)
        return {name: round(_dot(q, c), 4) for name, c in centroids.items()}

    async def decide(
        self, query: str, calls: list[CallRecord] | None = None
    ) -> tuple[RouteDecision, list[float]]:
        """Route ``query``; returns the decision and the query's embedding (reused for retrieval).

        Raises:
            RunError: When the embedding backend fails.
        """
        centroids = await self.profiles(calls)
        parts = split_parts(query)
        texts = [query, *parts] if len(parts) > 1 else [query]
        started = time.perf_counter()
        res = await self.embedder.embed(texts)
        if calls is not None:
            calls.append(self._call(res.tokens_in, time.perf_counter() - started, "route"))
        scores = self._scores(res.vectors[0], centroids)
        part_scores = [self._scores(v, centroids) for v in res.vectors[1:]]
        return self._decide(scores, part_scores, texts[1:]), res.vectors[0]

    def _decide(
        self,
        scores: dict[str, float],
        part_scores: list[dict[str, float]],
        part_texts: Sequence[str] = (),
    ) -> RouteDecision:
        s = self.settings
        ranked = sorted(scores, key=lambda n: scores[n], reverse=True)
        if not ranked or scores[ranked[0]] < s.min_score:
            best = f"{ranked[0]} {scores[ranked[0]]:.2f}" if ranked else "no workers"
            return RouteDecision(
                kind="supervisor",
                scores=scores,
                reason=f"no worker fits (best: {best} < {s.min_score:.2f})",
            )
        top = ranked[0]
        part_min = s.part_min_score if s.part_min_score is not None else s.min_score
        part_best: list[str] = []
        for ps in part_scores:
            name = max(ps, key=lambda n: ps[n])
            if ps[name] >= part_min and name not in part_best:
                part_best.append(name)
        if len(part_best) >= 2:
            chosen = part_best[: s.max_workers]
            parts = []
            for text, ps in zip(part_texts, part_scores, strict=False):
                name = max(ps, key=lambda n: ps[n])
                ok = ps[name] >= part_min
                score = min(1.0, max(0.0, ps[name]))
                parts.append(RoutePart(text=text, worker=name if ok else None, probability=score))
            return RouteDecision(
                kind="plan",
                workers=chosen,
                scores=scores,
                parts=parts,
                split=all(any(p.worker == w for p in parts) for w in chosen),
                reason=f"multi-part question: parts match {', '.join(chosen)}",
            )
        close = [
            n
            for n in ranked
            if scores[n] >= s.min_score and scores[top] - scores[n] <= s.plan_margin
        ]
        if len(close) >= 2:
            chosen = close[: s.max_workers]
            return RouteDecision(
                kind="plan",
                workers=chosen,
                scores=scores,
                reason="several domains match closely: "
                + ", ".join(f"{n} {scores[n]:.2f}" for n in chosen),
            )
        second = f"; next {ranked[1]} {scores[ranked[1]]:.2f}" if len(ranked) > 1 else ""
        return RouteDecision(
            kind="direct",
            workers=[top],
            scores=scores,
            reason=f"single domain: {top} {scores[top]:.2f}{second}",
        )
