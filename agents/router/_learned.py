"""The learned router: fit at start-up (cached on disk), then decide in milliseconds.

Fitting embeds the training texts (:mod:`._data`) — vectors are cached per text and
embedding model, so changing one example re-embeds only that one — fits the model
(:mod:`._model`) and, with enough labelled rows, tunes its thresholds by cross-validation.
The fitted model is cached under a key that hashes the training data, the embedding model
and the settings that shape it: edit a worker's examples or the ``train`` file and the
next start fits again; otherwise the cached model loads in milliseconds.

A decision embeds the question and its clauses in one call, scores them, applies the rule
and explains it: per-worker probabilities, the none-probability, the parts of the question
with their worker, and one sentence of reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from tandem.agents.router._data import (
    SYNTHETIC_PAIRS,
    LabelledRoute,
    TrainingSet,
    build_training_set,
    load_routes,
    stratified_folds,
    stratum,
)
from tandem.agents.router._linear import Array
from tandem.agents.router._model import (
    FORMAT,
    L2,
    LEX_WEIGHT,
    Choice,
    RouterModel,
    Scored,
    Thresholds,
    tune,
)
from tandem.agents.router._second import SecondStage, StageReply, grey_score
from tandem.agents.router._seed import seed_vectors, text_key
from tandem.agents.router._shipped import shipped_model, shipped_path
from tandem.agents.router._text import clause_spans, mentions_ask, strip_lead
from tandem.agents.router.settings import RouteDecision, RoutePart, RouterSettings
from tandem.workers.backends import Backend
from tandem.workers.records import CallRecord
from tandem.workers.spec import WorkerSpec
from tandem.workers.telemetry import call_finished

__all__ = ["FitInfo", "LearnedRouter", "thresholds_of"]

MIN_TUNE_ROWS = 30
TUNE_FOLDS = 4


def thresholds_of(settings: RouterSettings) -> Thresholds:
    """The decision thresholds given in the settings."""
    return Thresholds(
        multi=settings.multi_label,
        clause=settings.clause,
        statement=settings.clause_statement,
        clause_none=settings.clause_max_none,
        min_probability=settings.min_probability,
        none_probability=settings.max_none,
    )


class FitInfo(BaseModel):
    """How a learned router got its model."""

    rows: int = 0
    """Training texts (profiles, labelled rows, off-topic questions)."""
    labelled: int = 0
    """Rows from labelled files."""
    synthetic: int = 0
    """Synthetic cross-domain questions."""
    skipped: int = 0
    """Labelled rows that name unknown workers (not used)."""
    thresholds: dict[str, float] = Field(default_factory=dict)
    """The decision thresholds in use."""
    tuned: bool = False
    """The thresholds were chosen by cross-validation on the labelled rows."""
    tune_accuracy: float | None = None
    """Exact-route accuracy of the tuned thresholds, out of fold."""
    cached: bool = False
    """Loaded from the on-disk cache or the shipped fit (nothing was fitted)."""
    shipped: bool = False
    """Loaded from the fit shipped with tandem (the built-in workers, zero config)."""
    seconds: float = 0.0
    path: str | None = None
    """The cached model file."""


class _VectorCache:
    """Embeddings of training texts, per embedding model, in one ``.npz`` file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.vectors: dict[str, Array] = {}
        self.dirty = False
        if path is not None and path.exists():
            try:
                with np.load(path, allow_pickle=False) as data:
                    keys, vecs = data["keys"], data["vectors"]
                self.vectors = {str(k): v for k, v in zip(keys, vecs, strict=True)}
            except (OSError, ValueError, KeyError):
                self.vectors = {}  # a broken cache only costs time

    @staticmethod
    def key(text: str) -> str:
        return text_key(text)

    def save(self) -> None:
        if self.path is None or not self.dirty or not self.vectors:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with tmp.open("wb") as fh:
                np.savez(
                    fh,
                    keys=np.array(list(self.vectors)),
                    vectors=np.stack(list(self.vectors.values())).astype(np.float32),
                )
            tmp.replace(self.path)
            self.dirty = False
        except OSError:
            pass  # a cache that cannot be written only costs time


class LearnedRouter:
    """Routes with a model fitted on the workers' examples and labelled routes.

    Args:
        workers: The registered workers.
        embedder: Embedding backend (local).
        settings: ``[router]`` settings.
        routes: Labelled routes besides ``settings.train`` (the built-in workers' set).
        cache_dir: Where fitted models and training-text embeddings are cached
            (``None``: in memory only).
        exclude: Questions never to train on, whatever their source (cross-validation
            holds them out); such a router's model is not cached on disk.
        tune_all: Tune the thresholds on every labelled row (cross-validation does, so
            each fold chooses its own); otherwise only when ``settings.train`` has enough.
        use_shipped: Load the fit shipped with tandem when its key matches (:mod:`._shipped`).
        second: The second stage asked about grey-zone questions (``None``: off).
    """

    def __init__(
        self,
        workers: Sequence[WorkerSpec],
        embedder: Backend,
        settings: RouterSettings,
        *,
        routes: Sequence[LabelledRoute] = (),
        cache_dir: Path | None = None,
        exclude: Sequence[str] = (),
        tune_all: bool = False,
        use_shipped: bool = True,
        second: SecondStage | None = None,
    ) -> None:
        self.workers = list(workers)
        self.use_shipped = use_shipped
        self.exclude = list(exclude)
        self.tune_all = tune_all
        self._user_rows = 0
        self.embedder = embedder
        self.settings = settings
        self.routes = list(routes)
        self.cache_dir = cache_dir
        self.model: RouterModel | None = None
        self.second = second
        self.band = settings.second_stage_band
        """Grey-zone band of the second stage (:func:`~._second.grey_score` below it)."""
        self.oof: tuple[list[Scored], NDArray[np.bool_]] | None = None
        """After a fit that tuned its thresholds: the labelled rows scored out of fold and
        the workers each needs (the second stage's grey zone is chosen on them)."""
        self.fit_info = FitInfo()
        """How the model was obtained (after :meth:`fit`)."""

    # --- fitting -------------------------------------------------------------------------

    def training_set(self) -> TrainingSet:
        """What the router learns from.

        Raises:
            ConfigError: ``settings.train`` cannot be read.
        """
        routes = list(self.routes)
        if self.settings.train is not None:
            user = load_routes(self.settings.train)
            self._user_rows = len(user)
            routes += user
        return build_training_set(
            self.workers, routes, use_offtopic=self.settings.offtopic, exclude=self.exclude
        )

    def _key(self, ts: TrainingSet) -> str:
        shape = {
            "format": FORMAT,
            "l2": L2,
            "lex": LEX_WEIGHT,
            "synthetic": SYNTHETIC_PAIRS,
            "tune": self.settings.tune,
            "tune_all": self.tune_all,
            "thresholds": asdict(thresholds_of(self.settings)),
        }
        return ts.fingerprint(self.embedder.ref, json.dumps(shape, sort_keys=True))

    def _paths(self) -> tuple[Path | None, Path | None]:
        if self.cache_dir is None:
            return None, None
        model_id = hashlib.sha256(self.embedder.ref.encode()).hexdigest()[:12]
        base = self.cache_dir / "router"
        return base, base / f"embeddings-{model_id}.npz"

    async def _embed(
        self, texts: Sequence[str], cache: _VectorCache, calls: list[CallRecord] | None
    ) -> Array:
        keys = [cache.key(t) for t in texts]
        missing = list(
            dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in cache.vectors)
        )
        if missing:
            started = time.perf_counter()
            res = await self.embedder.embed(missing)
            if calls is not None:
                calls.append(self._call(res.tokens_in, time.perf_counter() - started, "router-fit"))
            for text, vec in zip(missing, res.vectors, strict=True):
                v = np.asarray(vec, dtype=np.float64)
                cache.vectors[cache.key(text)] = v / (np.linalg.norm(v) or 1.0)
            cache.dirty = True
        return np.stack([cache.vectors[k] for k in keys]).astype(np.float64)

    async def fit(self, calls: list[CallRecord] | None = None) -> RouterModel:
        """Fit (or load the cached) model; later calls return it at once.

        Raises:
            RunError: The embedding backend failed.
            ConfigError: The ``train`` file cannot be read.
        """
        if self.model is not None:
            return self.model
        started = time.perf_counter()
        ts = self.training_set()
        key = self._key(ts)
        base, vec_path = self._paths()
        cacheable = base is not None and not self.exclude
        model_path = base / f"model-{key}.npz" if cacheable and base is not None else None
        if model_path is not None and model_path.exists():
            try:
                model, meta = RouterModel.load(model_path)
                info = FitInfo.model_validate({**meta, "cached": True, "path": str(model_path)})
            except (OSError, ValueError, KeyError):
                pass  # refit below
            else:
                if model.workers == ts.workers:
                    self.model = model
                    self.fit_info = info.model_copy(
                        update={"seconds": time.perf_counter() - started}
                    )
                    return model
        shipped = shipped_model(key) if self.use_shipped and not self.exclude else None
        if shipped is not None and shipped[0].workers == ts.workers:
            model, meta = shipped
            self.model = model
            self.fit_info = FitInfo.model_validate(
                {
                    **meta,
                    "cached": True,
                    "shipped": True,
                    "path": str(shipped_path()),
                    "seconds": time.perf_counter() - started,
                }
            )
            return model
        cache = _VectorCache(vec_path)
        for k, v in seed_vectors(self.embedder.ref).items():  # the bundled texts' vectors
            cache.vectors.setdefault(k, v)
        vectors = await self._embed(ts.texts, cache, calls)
        thresholds = thresholds_of(self.settings)
        info = FitInfo(
            rows=len(ts.texts),
            labelled=len(ts.labelled),
            synthetic=len(ts.synthetic),
            skipped=ts.skipped,
            thresholds=asdict(thresholds),
        )
        enough = self.tune_all or self._user_rows >= MIN_TUNE_ROWS
        if self.settings.tune and enough and info.labelled >= MIN_TUNE_ROWS:
            thresholds, accuracy = await self._tune(ts, vectors, cache, calls, thresholds)
            info.thresholds = asdict(thresholds)
            info.tuned = True
            info.tune_accuracy = round(accuracy, 4)
        cache.save()
        # In a thread: a re-fit after routing feedback runs beside live requests (numpy
        # releases the GIL), so the event loop is not held for the fit's seconds.
        model = await asyncio.to_thread(RouterModel.fit, ts, vectors, thresholds)
        if model_path is not None:
            try:
                for old in model_path.parent.glob("model-*.npz"):
                    old.unlink(missing_ok=True)
                meta = info.model_dump(exclude={"cached", "shipped", "seconds", "path"})
                model.save(model_path, {**meta, "key": key})
                info.path = str(model_path)
            except OSError:
                pass
        self.model = model
        info.seconds = time.perf_counter() - started
        self.fit_info = info
        return model

    async def _tune(
        self,
        ts: TrainingSet,
        vectors: Array,
        cache: _VectorCache,
        calls: list[CallRecord] | None,
        start: Thresholds,
    ) -> tuple[Thresholds, float]:
        """Thresholds by k-fold cross-validation over the labelled rows."""
        labelled = ts.labelled
        clause_texts: dict[int, list[str]] = {}
        for i in labelled:
            spans = clause_spans(ts.texts[i])
            if len(spans) > 1:
                clause_texts[i] = [ts.texts[i][a:b] for a, b in spans]
        extra = [t for ts_ in clause_texts.values() for t in ts_]
        clause_vecs = await self._embed(extra, cache, calls) if extra else np.zeros((0, 1))
        offsets: dict[int, int] = {}
        pos = 0
        for i, texts in clause_texts.items():
            offsets[i] = pos
            pos += len(texts)
        folds = stratified_folds([stratum(ts.labels[i]) for i in labelled], TUNE_FOLDS)
        scored: list[Scored] = []
        truth = []
        for fold in folds:
            held = [labelled[j] for j in fold]
            sub, kept = ts.without(held)
            model = RouterModel.fit(sub, vectors[kept], start)
            for i in held:
                vecs = vectors[i : i + 1]
                if i in clause_texts:
                    o = offsets[i]
                    vecs = np.vstack([vecs, clause_vecs[o : o + len(clause_texts[i])]])
                scored.append(model.score(ts.texts[i], vecs))
                truth.append([w in ts.labels[i] for w in ts.workers])
        self.oof = (scored, np.array(truth, dtype=bool))
        return tune(scored, self.oof[1], start)

    # --- deciding ------------------------------------------------------------------------

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

    async def score(
        self, query: str, calls: list[CallRecord] | None = None
    ) -> tuple[Scored, list[float]]:
        """Embed ``query`` and its clauses (one call) and score them; also the query vector."""
        model = await self.fit(calls)
        spans = clause_spans(query)
        texts = [query] + ([query[a:b] for a, b in spans] if len(spans) > 1 else [])
        started = time.perf_counter()
        res = await self.embedder.embed(texts)
        if calls is not None:
            calls.append(self._call(res.tokens_in, time.perf_counter() - started, "route"))
        vectors = np.asarray(res.vectors, dtype=np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return model.score(query, vectors), list(res.vectors[0])

    async def decide(
        self, query: str, calls: list[CallRecord] | None = None
    ) -> tuple[RouteDecision, list[float]]:
        """Route ``query``; returns the decision and the query's embedding (for retrieval).

        Raises:
            RunError: When the embedding backend fails.
        """
        scored, vector = await self.score(query, calls)
        model = self.model
        assert model is not None  # fitted by score()
        choice = model.choose(scored)
        decision = explain(model, scored, choice, self.settings.max_workers)
        if self.second is None:
            return decision, vector
        grey = grey_score(scored, model.thresholds)
        if grey >= self.band:
            return decision, vector
        reply = await self.second.ask(query)
        if calls is not None and reply.call is not None:
            calls.append(reply.call)
        return second_decision(model, scored, choice, decision, reply, grey, self.band), vector


def second_decision(
    model: RouterModel,
    s: Scored,
    fast: Choice,
    decision: RouteDecision,
    reply: StageReply,
    grey: float,
    band: float,
) -> RouteDecision:
    """The decision for a grey-zone question after the second stage: its choice (with the
    fast router's probabilities and clause parts), or — when it failed — the fast decision
    with a note."""
    unsure = f"the fast router was unsure (margin {grey:.2f} < {band:.2f} log-odds)"
    common = {
        "second_stage": reply.note,
        "second_stage_ms": round(reply.ms, 1),
        "fast_workers": list(decision.workers),
    }
    if reply.workers is None:
        return decision.model_copy(
            update={**common, "reason": f"{decision.reason}; {unsure}, {reply.note}: kept"}
        )
    index = {n: k for k, n in enumerate(model.workers)}
    picked = [index[w] for w in reply.workers]
    order = [k for k in fast.workers if k in picked] + [k for k in picked if k not in fast.workers]
    choice = replace(fast, workers=order, split=fast.split and set(order) == set(fast.workers))
    out = explain(model, s, choice)
    return out.model_copy(
        update={
            **common,
            "stage": "second",
            "best_match": False,  # the second stage chose it
            "reason": f"second stage: {reply.note} ({unsure}; it had: {decision.reason})",
        }
    )


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _fill(
    s: Scored, matched: list[int | None], missing: Sequence[int]
) -> tuple[set[int], set[int]]:
    """Give each chosen worker in ``missing`` (no clause of its own) the clause it scores
    highest on, in place in ``matched``: of the clauses that can be taken (unmatched, or
    their worker keeps another clause), one that asks something if any
    (:func:`~._text.mentions_ask`: "I'm moving out soon: what's the deadline …" too), else
    any. Returns the clauses given this way and the workers left without one (they get the
    whole question)."""
    given: set[int] = set()
    whole: set[int] = set()
    for k in missing:
        free = [
            j
            for j, w in enumerate(matched)
            if w is None or any(i != j and matched[i] == w for i in range(len(matched)))
        ]
        pool = [j for j in free if mentions_ask(s.text[slice(*s.spans[j])])] or free
        if not pool:
            whole.add(k)
            continue
        j = max(pool, key=lambda j: float(s.clause_probs[j][k]))
        matched[j] = k
        given.add(j)
    return given, whole


def _parts(
    s: Scored, choice: Choice, workers: list[str], chosen: Sequence[int] = ()
) -> list[RoutePart]:
    """Clauses grouped into parts: an unmatched asking clause ("is he right?") joins the
    part before it, an unmatched telling clause ("I lost my job") the part after it.

    With ``chosen`` (a plan whose rule left a chosen worker without a clause of its own), a
    clause matched to a worker not chosen counts as unmatched, and each chosen worker
    without a clause is given its best clause (:func:`_fill`) or the whole question."""
    n = len(choice.clause_workers)
    if n == 0:
        return []
    matched: list[int | None] = list(choice.clause_workers)
    if all(a is None for a in matched):
        return []
    given: set[int] = set()
    whole: set[int] = set()
    if chosen:
        matched = [w if w in chosen else None for w in matched]
        have = {w for w in matched if w is not None}
        given, whole = _fill(s, matched, [k for k in chosen if k not in have])
    assigned = list(matched)
    for j in range(n):
        if assigned[j] is not None:
            continue
        before = next((assigned[i] for i in range(j - 1, -1, -1) if assigned[i] is not None), None)
        after = next((matched[i] for i in range(j + 1, n) if matched[i] is not None), None)
        assigned[j] = (
            (before if before is not None else after)
            if s.asks[j]
            else (after if after is not None else before)
        )
    parts: list[tuple[int, int, int, float, bool]] = []  # start, end, worker, probability, given
    for j, (a, b) in enumerate(s.spans):
        w = assigned[j]
        assert w is not None
        if j in given:
            conf = float(s.clause_probs[j][w])
        else:
            conf = choice.clause_confidence[j] if choice.clause_workers[j] == w else 0.0
        if parts and parts[-1][2] == w:
            start, _, _, p, g = parts[-1]
            parts[-1] = (start, b, w, max(p, conf), g or j in given)
        else:
            parts.append((a, b, w, conf, j in given))
    out = [
        RoutePart(
            text=strip_lead(s.text[a:b]),
            worker=workers[w],
            probability=round(p, 4),
            by="best clause" if g else "clause",
        )
        for a, b, w, p, g in parts
    ]
    out += [
        RoutePart(
            text=s.text,
            worker=workers[k],
            probability=round(float(s.probabilities[k]), 4),
            by="question",
        )
        for k in chosen
        if k in whole
    ]
    return out


def explain(model: RouterModel, s: Scored, choice: Choice, max_workers: int = 16) -> RouteDecision:
    """The decision for a scored question, with its probabilities, parts and reason."""
    names = model.workers
    th = model.thresholds
    probs = {n: round(float(p), 4) for n, p in zip(names, s.probabilities, strict=True)}
    none = round(float(s.single[-1]), 4)
    ranked = sorted(names, key=lambda n: -probs[n])
    chosen = [names[k] for k in choice.workers][:max_workers]
    common = {"scores": probs, "probabilities": probs, "none_probability": none}
    if not chosen:
        best = f"{ranked[0]} {probs[ranked[0]]:.2f}" if ranked else "no workers"
        return RouteDecision(
            kind="supervisor",
            reason=f"no specialist fits: none {none:.2f}, best {best}",
            **common,
        )
    if len(chosen) == 1:
        w = chosen[0]
        nxt = next((n for n in ranked if n != w), None)
        tail = f"; next {nxt} {probs[nxt]:.2f}" if nxt else ""
        how = "" if probs[w] >= th.multi else f" (best match, below {th.multi:.2f})"
        return RouteDecision(
            kind="direct",
            workers=chosen,
            parts=[RoutePart(text=s.text, worker=w, probability=probs[w])],
            reason=f"one specialist: {w} {probs[w]:.2f}{how}{tail}",
            best_match=bool(how),
            **common,
        )
    parts = _parts(s, choice, names)
    covered = {p.worker for p in parts if p.probability > 0}
    split = choice.split and set(chosen) <= covered
    filled = False
    if split:
        reason = f"{len(parts)} parts on different specialists: " + "; ".join(
            f"{p.worker} {p.probability:.2f} '{_short(p.text, 40)}'" for p in parts
        )
    else:
        reason = (
            "the question needs several specialists: "
            + ", ".join(f"{n} {probs[n]:.2f}" for n in chosen)
            + (
                f" (each ≥ {th.multi:.2f}"
                + (", or a clause of its own)" if choice.via_clauses else ")")
            )
        )
        if parts:  # some clause is about a specialist: give the others their best clause
            index = {n: k for k, n in enumerate(names)}
            parts = _parts(s, choice, names, [index[n] for n in chosen])
            filled = {p.worker for p in parts} >= set(chosen)
            if filled:
                reason += "; parts: " + "; ".join(
                    f"{p.worker}{p.how}"
                    + (f" '{_short(p.text, 40)}'" if p.by != "question" else "")
                    for p in parts
                )
    return RouteDecision(
        kind="plan",
        workers=chosen,
        parts=parts,
        split=split,
        filled=filled,
        reason=reason,
        **common,
    )
