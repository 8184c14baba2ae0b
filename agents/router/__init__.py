"""Local routing: which worker(s) should answer, without any large-model call.

The default router is *learned* (:mod:`._learned`): a small multi-label model over the
bundled MiniLM sentence embedding and hashed word features, fitted at start-up on each
worker's description and examples, a list of general questions (the "none" class),
synthetic cross-domain pairs and — optionally — a labelled routing file; cached on disk.
A decision scores the whole question and each of its clauses, so "…my deposit back, and
can I deduct…" reaches both specialists, and reports per-worker probabilities, the parts
of the question and a reason. ``[router] kind = "centroid"`` keeps the earlier router
(:mod:`._centroid`). :func:`evaluate_router` measures either with k-fold
cross-validation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

from tandem.agents.router._centroid import CentroidRouter, split_parts
from tandem.agents.router._data import LabelledRoute, load_routes
from tandem.agents.router._learned import FitInfo, LearnedRouter
from tandem.agents.router._second import SecondStage
from tandem.agents.router.evaluate import RouterEvalReport, evaluate_router
from tandem.agents.router.settings import RouteDecision, RoutePart, RouterSettings
from tandem.workers.backends import Backend
from tandem.workers.records import CallRecord
from tandem.workers.spec import WorkerSpec

__all__ = [
    "FitInfo",
    "LabelledRoute",
    "LearnedRouter",
    "RouteDecision",
    "RoutePart",
    "Router",
    "RouterEvalReport",
    "RouterSettings",
    "SecondStage",
    "evaluate_router",
    "load_routes",
    "split_parts",
]


class Router:
    """Scores questions against the workers and decides who answers.

    Args:
        workers: The registered workers.
        embedder: Embedding backend (local).
        settings: ``[router]`` settings (``kind`` picks the router).
        routes: Labelled routes besides ``settings.train`` (learned router).
        cache_dir: Directory for the on-disk caches (fitted model, embeddings).
        cache_path: Centroid router: its profile-embedding cache file (default: in
            ``cache_dir``).
        second: Learned router: the second stage for grey-zone questions (``None``: off).
    """

    def __init__(
        self,
        workers: Sequence[WorkerSpec],
        embedder: Backend,
        settings: RouterSettings,
        *,
        routes: Sequence[LabelledRoute] = (),
        cache_dir: Path | None = None,
        cache_path: Path | None = None,
        second: SecondStage | None = None,
    ) -> None:
        self.second = second
        self.workers = list(workers)
        self.embedder = embedder
        self.settings = settings
        self.learned: LearnedRouter | None = None
        self.centroid: CentroidRouter | None = None
        self._refit: asyncio.Task[None] | None = None
        if settings.kind == "centroid":
            if cache_path is None and cache_dir is not None:
                cache_path = cache_dir / "router-profiles.json"
            self.centroid = CentroidRouter(workers, embedder, settings, cache_path=cache_path)
        else:
            self.learned = LearnedRouter(
                workers, embedder, settings, routes=routes, cache_dir=cache_dir, second=second
            )

    def refit(
        self, workers: Sequence[WorkerSpec], routes: Sequence[LabelledRoute] | None = None
    ) -> None:
        """Train again on new workers/examples and labelled ``routes`` (learning's approved
        routing feedback). The centroid router re-embeds its profiles on its next decision.
        A fitted learned router keeps deciding with its current model while the new one is
        fitted in the background (or loaded from the cache for exactly this data), then
        switches; :meth:`refitted` waits for that. Texts embedded before are not embedded
        again."""
        self.workers = list(workers)
        if self.centroid is not None:
            self.centroid.workers = list(workers)
            self.centroid._centroids = None
            return
        old = self.learned
        assert old is not None
        fresh = LearnedRouter(
            workers,
            self.embedder,
            self.settings,
            routes=old.routes if routes is None else routes,
            cache_dir=old.cache_dir,
            second=None if self.second is None else self.second.with_workers(workers),
        )
        if self._refit is not None:
            self._refit.cancel()
            self._refit = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if old.model is None or loop is None:
            self.learned = fresh  # nothing fitted to keep using: fit on the next decision
            return

        async def fit() -> None:
            with contextlib.suppress(Exception):  # a failure is raised by the next decision
                await fresh.fit()
            self.learned = fresh

        self._refit = loop.create_task(fit())

    async def refitted(self) -> None:
        """Wait until a :meth:`refit` in progress has switched to the new model."""
        if self._refit is not None:
            await self._refit

    async def profiles(self, calls: list[CallRecord] | None = None) -> None:
        """Get ready to decide: fit (or load) the learned model, or embed the profiles.

        Raises:
            RunError: The embedding backend failed.
            ConfigError: ``[router] train`` cannot be read.
        """
        if self.learned is not None:
            await self.learned.fit(calls)
        elif self.centroid is not None:
            await self.centroid.profiles(calls)

    async def decide(
        self, query: str, calls: list[CallRecord] | None = None
    ) -> tuple[RouteDecision, list[float]]:
        """Route ``query``; returns the decision and the query's embedding (for retrieval).

        Raises:
            RunError: When the embedding backend fails.
        """
        if self.learned is not None:
            return await self.learned.decide(query, calls)
        assert self.centroid is not None
        return await self.centroid.decide(query, calls)
