"""Local routing: which worker(s) should answer, without any large-model call.

Each worker's profile (its description and example questions) is embedded once
and cached. A query is scored against every worker by cosine similarity (best
match among its profile texts). Complexity signals decide between answering
directly and planning: several workers close together at the top, or a
multi-part question whose parts land on different workers.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from tandem.workers.backends import Backend
from tandem.workers.records import CallRecord
from tandem.workers.spec import WorkerSpec

__all__ = ["RouteDecision", "Router", "RouterSettings", "split_parts"]


class RouterSettings(BaseModel):
    """Routing model and thresholds (``[router]`` in tandem.toml)."""

    model_config = ConfigDict(extra="forbid")

    embed_model: str = "embedded:qwen2.5-coder-0.5b"
    """Embedding model for routing and for every worker store (``ollama:…``/``embedded:…``)."""
    min_score: float = Field(default=0.35, ge=-1, le=1)
    """A worker fits a query when its score reaches this; below it for all → supervisor."""
    plan_margin: float = Field(default=0.05, ge=0, le=2)
    """Plan across workers whose scores are within this margin of the best one."""
    part_min_score: float | None = None
    """Score a part of a multi-part query needs to count (default: ``min_score``)."""
    max_workers: int = Field(default=3, ge=1, le=16)
    """At most this many workers in a routed plan."""


class RouteDecision(BaseModel):
    """The router's decision, explainable."""

    kind: Literal["direct", "plan", "supervisor"]
    """``direct``: one worker answers; ``plan``: the supervisor splits the work; ``supervisor``:
    no worker fits."""
    workers: list[str] = Field(default_factory=list)
    """Workers chosen (best first)."""
    scores: dict[str, float] = Field(default_factory=dict)
    """Similarity of the query to each worker."""
    reason: str = ""
    """Why, in one sentence."""


_PART_SPLIT = re.compile(r"(?<=[?])\s+|;\s+|\.\s+(?:And|Also|Plus)\b|\s+(?:and also|as well as)\s+")


def split_parts(query: str) -> list[str]:
    """Split a multi-part question into its parts ("…? And …?", "…; …")."""
    parts = [p.strip(" ,.") for p in _PART_SPLIT.split(query)]
    return [p for p in parts if len(p.split()) >= 3]


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


class Router:
    """Scores queries against worker profiles with local embeddings.

    Args:
        workers: The registered workers.
        embedder: Embedding backend (local).
        settings: Thresholds.
    """

    def __init__(
        self, workers: Sequence[WorkerSpec], embedder: Backend, settings: RouterSettings
    ) -> None:
        self.workers = list(workers)
        self.embedder = embedder
        self.settings = settings
        self._profiles: dict[str, list[list[float]]] | None = None

    def _call(self, tokens: int, seconds: float, purpose: str) -> CallRecord:
        return CallRecord(
            role="embed",
            model=self.embedder.ref,
            where=self.embedder.where,
            tokens_in=tokens,
            seconds=seconds,
            host=self.embedder.host,
            purpose=purpose,
        )

    async def profiles(self, calls: list[CallRecord] | None = None) -> dict[str, list[list[float]]]:
        """Embeddings of each worker's description and examples (computed once)."""
        if self._profiles is None:
            texts: list[str] = []
            owners: list[str] = []
            for w in self.workers:
                for text in (w.description, *w.examples):
                    texts.append(text)
                    owners.append(w.name)
            profiles: dict[str, list[list[float]]] = {w.name: [] for w in self.workers}
            if texts:
                started = time.perf_counter()
                res = await self.embedder.embed(texts)
                if calls is not None:
                    calls.append(
                        self._call(res.tokens_in, time.perf_counter() - started, "profiles")
                    )
                for owner, vec in zip(owners, res.vectors, strict=True):
                    profiles[owner].append(vec)
            self._profiles = profiles
        return self._profiles

    def _scores(
        self, vec: Sequence[float], profiles: dict[str, list[list[float]]]
    ) -> dict[str, float]:
        return {
            name: round(max((_cos(vec, p) for p in vecs), default=0.0), 4)
            for name, vecs in profiles.items()
        }

    async def decide(
        self, query: str, calls: list[CallRecord] | None = None
    ) -> tuple[RouteDecision, list[float]]:
        """Route ``query``; returns the decision and the query's embedding (reused for retrieval).

        Raises:
            RunError: When the embedding backend fails.
        """
        profiles = await self.profiles(calls)
        parts = split_parts(query)
        texts = [query, *parts] if len(parts) > 1 else [query]
        started = time.perf_counter()
        res = await self.embedder.embed(texts)
        if calls is not None:
            calls.append(self._call(res.tokens_in, time.perf_counter() - started, "route"))
        scores = self._scores(res.vectors[0], profiles)
        return self._decide(
            scores, [self._scores(v, profiles) for v in res.vectors[1:]]
        ), res.vectors[0]

    def _decide(
        self, scores: dict[str, float], part_scores: list[dict[str, float]]
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
            return RouteDecision(
                kind="plan",
                workers=chosen,
                scores=scores,
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
