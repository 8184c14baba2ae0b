"""How well a router routes: accuracy, recall per class, confusion, latency — honestly.

:func:`evaluate_router` scores a labelled set (``tandem eval`` JSONL). With ``folds=K`` it
runs k-fold cross-validation (folds stratified by single worker / cross-domain / none):
each fold's router is fitted on the configured training data plus the other folds, with
every held-out question removed from *all* its training sources, so no question is scored
by a router that saw it (its thresholds, when tuned, are chosen inside the training folds
too). Without folds, the configured router is scored as it is, and rows it was trained on
are counted in ``overlap``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, computed_field

from tandem.agents.router._centroid import CentroidRouter
from tandem.agents.router._data import LabelledRoute, stratified_folds, stratum
from tandem.agents.router._learned import LearnedRouter
from tandem.agents.router._second import SecondStage, grey_band
from tandem.agents.router._text import normalize
from tandem.agents.router.settings import RouteDecision, RouterSettings
from tandem.workers.backends import Backend
from tandem.workers.spec import WorkerSpec

__all__ = ["ClassMetrics", "EvalRow", "RouterEvalReport", "evaluate_router", "label_of"]


def label_of(workers: Sequence[str]) -> str:
    """A route's class: the worker's name, ``cross`` (several) or ``none``."""
    return "none" if not workers else workers[0] if len(workers) == 1 else "cross"


class EvalRow(BaseModel):
    """One scored question."""

    question: str
    expected: list[str]
    chosen: list[str]
    kind: str
    correct: bool
    fold: int = 0
    probabilities: dict[str, float] = Field(default_factory=dict)
    none_probability: float | None = None
    reason: str = ""
    ms: float = 0.0
    fast: list[str] | None = None
    """With a second stage: the fast router's choice when the question was grey (the
    second stage was asked); ``None`` otherwise."""
    second_ms: float | None = None
    """How long the second stage took on this question."""
    stage: str = "fast"
    """Who decided: ``fast`` or ``second``."""


class ClassMetrics(BaseModel):
    """The headline figures of a set of rows."""

    n: int
    accuracy: float
    """Exact specialist set (and so route kind) right."""
    route_accuracy: float
    """Route kind right: direct / plan / supervisor."""
    single_recall: float
    cross_recall: float
    """Cross-domain questions routed to exactly their specialists."""
    cross_detected: float
    """Cross-domain questions routed to a plan (any specialists)."""
    none_recall: float
    none_precision: float
    """Of the questions sent to no specialist, the share that were out of scope."""


class RouterEvalReport(BaseModel):
    """What :func:`evaluate_router` measured."""

    router: str
    folds: int
    """0: no cross-validation."""
    overall: ClassMetrics
    per_fold: list[ClassMetrics] = Field(default_factory=list)
    labels: list[str]
    confusion: list[list[int]]
    """``confusion[i][j]``: rows labelled ``labels[i]`` routed as ``labels[j]``."""
    latency_ms_p50: float
    latency_ms_p95: float
    fit_seconds: list[float] = Field(default_factory=list)
    overlap: int = 0
    """Without folds: evaluated questions that are also in the router's training data."""
    brier: float | None = None
    """Mean squared error of the per-worker probabilities (learned router)."""
    ece: float | None = None
    """Expected calibration error of the per-worker probabilities (10 bins)."""
    rows: list[EvalRow] = Field(default_factory=list)
    repeats: list[ClassMetrics] = Field(default_factory=list)
    """With ``repeat`` > 1: each fold assignment's overall figures, the first being
    ``overall`` (whose rows, folds and confusion the report shows)."""
    always_misrouted: list[str] = Field(default_factory=list)
    """With ``repeat`` > 1: the questions misrouted under every fold assignment."""

    @property
    def misrouted(self) -> list[EvalRow]:
        return [r for r in self.rows if not r.correct]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def mean(self) -> ClassMetrics:
        """Each figure's mean over the fold assignments (``overall`` without repeats): one
        assignment of a few hundred questions moves exact accuracy by a few points."""
        runs = self.repeats or [self.overall]
        fields = [f for f in ClassMetrics.model_fields if f != "n"]
        return ClassMetrics(
            n=runs[0].n, **{f: sum(getattr(r, f) for r in runs) / len(runs) for f in fields}
        )


def _kind(workers: Sequence[str]) -> str:
    return "supervisor" if not workers else "direct" if len(workers) == 1 else "plan"


def metrics(rows: Sequence[EvalRow]) -> ClassMetrics:
    """:class:`ClassMetrics` of some rows."""

    def share(sel: list[EvalRow], ok: list[bool]) -> float:
        return sum(ok) / len(sel) if sel else 0.0

    single = [r for r in rows if len(r.expected) == 1]
    cross = [r for r in rows if len(r.expected) > 1]
    none = [r for r in rows if not r.expected]
    said_none = [r for r in rows if not r.chosen]
    return ClassMetrics(
        n=len(rows),
        accuracy=share(list(rows), [r.correct for r in rows]),
        route_accuracy=share(list(rows), [r.kind == _kind(r.expected) for r in rows]),
        single_recall=share(single, [r.correct for r in single]),
        cross_recall=share(cross, [r.correct for r in cross]),
        cross_detected=share(cross, [len(r.chosen) > 1 for r in cross]),
        none_recall=share(none, [r.correct for r in none]),
        none_precision=share(said_none, [not r.expected for r in said_none]) if said_none else 1.0,
    )


def _row(route: LabelledRoute, decision: RouteDecision, fold: int, ms: float) -> EvalRow:
    return EvalRow(
        question=route.question,
        expected=list(route.workers),
        chosen=list(decision.workers),
        kind=decision.kind,
        correct=set(decision.workers) == set(route.workers),
        fold=fold,
        probabilities=decision.probabilities,
        none_probability=decision.none_probability,
        reason=decision.reason,
        ms=ms,
        fast=decision.fast_workers,
        second_ms=decision.second_stage_ms,
        stage=decision.stage,
    )


def _calibration(rows: Sequence[EvalRow]) -> tuple[float | None, float | None]:
    pairs = [(p, w in r.expected) for r in rows for w, p in r.probabilities.items()]
    if not pairs:
        return None, None
    prob = np.array([p for p, _ in pairs])
    truth = np.array([float(t) for _, t in pairs])
    brier = float(((prob - truth) ** 2).mean())
    bins = np.minimum((prob * 10).astype(int), 9)
    ece = sum(
        abs(prob[bins == b].mean() - truth[bins == b].mean()) * (bins == b).mean()
        for b in range(10)
        if (bins == b).any()
    )
    return round(brier, 4), round(float(ece), 4)


async def evaluate_router(
    workers: Sequence[WorkerSpec],
    embedder: Backend,
    settings: RouterSettings,
    data: Sequence[LabelledRoute],
    *,
    folds: int = 0,
    routes: Sequence[LabelledRoute] = (),
    cache_dir: Path | None = None,
    seed: int = 0,
    second: SecondStage | None = None,
    second_share: float | None = None,
    repeat: int = 1,
) -> RouterEvalReport:
    """Score a router on labelled routes, optionally with k-fold cross-validation.

    Args:
        workers: The registered workers (rows naming others are scored as they are).
        embedder: Embedding backend.
        settings: ``[router]`` settings (``kind``, ``train``, thresholds …).
        data: The labelled questions to score.
        folds: ``K`` ≥ 2 for k-fold cross-validation; 0 scores the configured router.
        routes: Labelled routes the router trains on besides ``settings.train``.
        cache_dir: Embedding cache for training texts (decisions always embed afresh).
        seed: Seed of the fold assignment.
        second: The learned router's second stage for grey-zone questions (``None``: off).
        second_share: With folds and ``second``: choose each fold's grey band on its
            training folds' out-of-fold scores so that at most this share goes to the second
            stage (``None``: ``settings.second_stage_band``).
        repeat: With folds: repeat the cross-validation over this many fold assignments
            (seeds ``seed``, ``seed + 1`` …); the report is the first one's, with every
            assignment's figures in ``repeats`` and their mean in ``mean``.

    Raises:
        RunError: The embedding backend failed.
        ConfigError: ``settings.train`` cannot be read.
    """
    k = folds if folds >= 2 else 1
    if repeat > 1 and k > 1:
        runs = [
            await evaluate_router(
                workers,
                embedder,
                settings,
                data,
                folds=k,
                routes=routes,
                cache_dir=cache_dir,
                seed=seed + i,
                second=second,
                second_share=second_share,
            )
            for i in range(repeat)
        ]
        missed = [{r.question for r in run.misrouted} for run in runs]
        return runs[0].model_copy(
            update={
                "repeats": [run.overall for run in runs],
                "always_misrouted": [
                    r.question for r in runs[0].misrouted if all(r.question in m for m in missed)
                ],
                "fit_seconds": [x for run in runs for x in run.fit_seconds],
            }
        )
    assignment = (
        stratified_folds([stratum(r.workers) for r in data], k, seed)
        if k > 1
        else [list(range(len(data)))]
    )
    rows: list[EvalRow] = []
    fit_seconds: list[float] = []
    overlap = 0
    for f, held in enumerate(assignment):
        held_set = set(held)
        test = [data[i] for i in held]
        train_rows = [r for i, r in enumerate(data) if i not in held_set] if k > 1 else []
        router: LearnedRouter | CentroidRouter
        if settings.kind == "centroid":
            router = CentroidRouter(workers, embedder, settings)
            started = time.perf_counter()
            await router.profiles()
        else:
            router = LearnedRouter(
                workers,
                embedder,
                settings,
                routes=[*routes, *train_rows],
                cache_dir=cache_dir,
                exclude=[r.question for r in test] if k > 1 else (),
                tune_all=k > 1,
                second=second,
            )
            started = time.perf_counter()
            model = await router.fit()
            if second is not None and second_share is not None and router.oof is not None:
                router.band = grey_band(router.oof[0], model.thresholds, second_share)
            if k == 1:
                trained = {normalize(t) for t in router.training_set().texts}
                overlap = sum(normalize(r.question) in trained for r in test)
        fit_seconds.append(round(time.perf_counter() - started, 3))
        for route in test:
            t0 = time.perf_counter()
            decision, _ = await router.decide(route.question)
            rows.append(_row(route, decision, f, (time.perf_counter() - t0) * 1000))
    order = {id(r): i for i, r in enumerate(data)}
    index = {r.question: order[id(r)] for r in data}
    rows.sort(key=lambda r: index.get(r.question, 0))
    labels = sorted({label_of(r.expected) for r in rows} | {label_of(r.chosen) for r in rows})
    labels = (
        [w.name for w in workers if w.name in labels]
        + [x for x in ("cross", "none") if x in labels]
        + [x for x in labels if x not in {w.name for w in workers} | {"cross", "none"}]
    )
    pos = {x: i for i, x in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    for r in rows:
        confusion[pos[label_of(r.expected)]][pos[label_of(r.chosen)]] += 1
    ms = np.array([r.ms for r in rows]) if rows else np.zeros(1)
    brier, ece = _calibration(rows)
    return RouterEvalReport(
        router=settings.kind,
        folds=k if k > 1 else 0,
        overall=metrics(rows),
        per_fold=[metrics([r for r in rows if r.fold == f]) for f in range(k)] if k > 1 else [],
        labels=labels,
        confusion=confusion,
        latency_ms_p50=round(float(np.percentile(ms, 50)), 2),
        latency_ms_p95=round(float(np.percentile(ms, 95)), 2),
        fit_seconds=fit_seconds,
        overlap=overlap,
        brier=brier,
        ece=ece,
        rows=rows,
    )
