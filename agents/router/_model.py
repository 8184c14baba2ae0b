"""The learned routing model: fit it, score a question and its clauses, decide, tune.

Two linear heads over [sentence embedding, hashed word features] (:mod:`._linear`):

* ``sigmoid`` — for each worker, the probability that the question needs it (multi-label:
  several may pass the ``multi`` threshold, or none). These are the per-worker
  probabilities a decision reports.
* ``softmax`` — which *single* worker (or none) a text is about; applied to the whole
  question (its "none" probability) and to each clause.

The decision: the workers whose probability reaches ``multi``, plus — when at least two
clauses land confidently on *different* workers — those clauses' workers. A clause that
asks something counts when its none-probability is at most ``clause_none`` and its best
worker holds at least ``clause`` of the rest; a clause that only tells ("I rent from my
dad") needs ``statement``. With no worker chosen, the best one still answers directly
when its probability reaches ``min_probability`` and the question's none-probability
stays below ``none_probability``; otherwise no specialist fits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tandem.agents.router._data import TrainingSet
from tandem.agents.router._linear import Array, Features, LinearHead, fit_head
from tandem.agents.router._text import batch_word_features, clause_spans, is_ask

__all__ = ["Choice", "RouterModel", "Scored", "Thresholds", "features", "tune"]

L2 = 3e-4
"""L2 penalty of both heads (sample weights sum to 1); chosen by nested CV. (1e-3 scored
within a question of it by 5-fold CV on the demo set, but one approved routing correction
no longer outweighs the training rows near it.)"""
LEX_WEIGHT = 1.5
"""Scale of the word features next to the unit-length embedding; chosen by nested CV."""
FORMAT = 1
"""Version of the saved model layout (part of the cache key)."""


@dataclass(frozen=True)
class Thresholds:
    """The decision rule's thresholds (see the module docstring)."""

    multi: float
    clause: float
    statement: float
    clause_none: float
    min_probability: float
    none_probability: float


GRID: dict[str, tuple[float, ...]] = {
    "multi": (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.96, 0.98),
    "clause": (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95),
    "statement": (0.6, 0.7, 0.8, 0.9, 1.0),
    "clause_none": (0.3, 0.5, 0.7, 1.0),
    "min_probability": (0.05, 0.1, 0.2, 0.3),
    "none_probability": (0.5, 0.6, 0.7, 0.8, 1.0),
}
"""Values threshold tuning tries (1.0 switches a rule off)."""


@dataclass(frozen=True)
class Scored:
    """A question as the model sees it."""

    text: str
    probabilities: Array
    """(K,) per-worker probability that the question needs the worker (sigmoid head)."""
    single: Array
    """(K+1,) softmax over the workers and none (last) for the whole question."""
    spans: list[tuple[int, int]]
    """Clause spans in ``text`` (one span: not split)."""
    clause_probs: Array
    """(m, K+1) softmax per clause; m = 0 when the question is one clause."""
    asks: list[bool]


@dataclass(frozen=True)
class Choice:
    """What the rule chose: worker indices (in question order) and each clause's worker."""

    workers: list[int]
    clause_workers: list[int | None]
    clause_confidence: list[float]
    split: bool
    """At least two clauses decided (each chosen worker has a confident clause)."""
    via_clauses: bool
    """The clause rule added workers (two or more clauses on different workers)."""


def features(vectors: Array, texts: Sequence[str], lex_weight: float = LEX_WEIGHT) -> Features:
    """Model input for texts and their embeddings."""
    rows, cols, vals = batch_word_features(texts)
    return Features(
        np.asarray(vectors, dtype=np.float64),
        np.asarray(rows, dtype=np.int64),
        np.asarray(cols, dtype=np.int64),
        np.asarray(vals, dtype=np.float64) * lex_weight,
    )


def _clause_conf(probs: Array, ask: bool, th: Thresholds) -> tuple[int, float, bool]:
    """A clause's best worker, its confidence, and whether that passes its threshold."""
    k_none = len(probs) - 1
    k = int(np.argmax(probs[:k_none]))
    if ask:
        if probs[k_none] > th.clause_none:
            return k, 0.0, False
        conf = float(probs[k] / max(1e-9, 1.0 - probs[k_none]))
        return k, conf, conf >= th.clause
    return k, float(probs[k]), float(probs[k]) >= th.statement


class RouterModel:
    """A fitted router for a fixed list of workers."""

    def __init__(
        self,
        workers: Sequence[str],
        softmax: LinearHead,
        sigmoid: LinearHead,
        thresholds: Thresholds,
        lex_weight: float = LEX_WEIGHT,
    ) -> None:
        self.workers = list(workers)
        self.softmax = softmax
        self.sigmoid = sigmoid
        self.thresholds = thresholds
        self.lex_weight = lex_weight

    @classmethod
    def fit(
        cls,
        ts: TrainingSet,
        vectors: Array,
        thresholds: Thresholds,
        *,
        l2: float = L2,
        lex_weight: float = LEX_WEIGHT,
    ) -> RouterModel:
        """Fit both heads on a training set (``vectors[i]`` embeds ``ts.texts[i]``)."""
        k = len(ts.workers)
        index = {w: i for i, w in enumerate(ts.workers)}
        texts = list(ts.texts)
        labels = list(ts.labels)
        groups = list(ts.groups)
        dense = [np.asarray(vectors, dtype=np.float64)]
        if ts.synthetic:
            mean = np.stack([dense[0][list(src)].sum(axis=0) for src, _ in ts.synthetic])
            dense.append(mean / np.linalg.norm(mean, axis=1, keepdims=True))
            for src, text in ts.synthetic:
                texts.append(text)
                labels.append(tuple(dict.fromkeys(ts.labels[i][0] for i in src)))
                groups.append("synthetic")
        x = features(np.vstack(dense), texts, lex_weight)
        multi = np.zeros((len(texts), k))
        for r, labs in enumerate(labels):
            for w in labs:
                multi[r, index[w]] = 1.0
        count = multi.sum(axis=1)
        soft = np.zeros((len(texts), k + 1))
        soft[count == 0, k] = 1.0
        soft[count > 0, :k] = multi[count > 0] / count[count > 0, None]
        g = np.asarray(groups)
        weights = np.zeros(len(texts))
        for name in set(groups):  # every group weighs the same in total
            weights[g == name] = 1.0 / float((g == name).sum())
        softmax = fit_head(x, soft, weights, kind="softmax", l2=l2)
        sigmoid = fit_head(x, multi, weights, kind="sigmoid", l2=l2)
        return cls(ts.workers, softmax, sigmoid, thresholds, lex_weight)

    def score(self, text: str, vectors: Array) -> Scored:
        """Score a question: ``vectors`` embed the question, then each of its clauses
        (:func:`~._text.clause_spans`; only the question when it is one clause)."""
        spans = clause_spans(text)
        texts = [text] + ([text[a:b] for a, b in spans] if len(spans) > 1 else [])
        x = features(np.asarray(vectors)[: len(texts)], texts, self.lex_weight)
        single = self.softmax.predict(x)
        probs = self.sigmoid.predict(x.take(np.array([0])))[0]
        return Scored(
            text,
            probs,
            single[0],
            spans,
            single[1:],
            [is_ask(t) for t in texts[1:]],
        )

    def choose(self, s: Scored, th: Thresholds | None = None) -> Choice:
        """Apply the decision rule (module docstring) to a scored question."""
        th = th or self.thresholds
        p = s.probabilities
        whole = {int(i) for i in np.flatnonzero(p >= th.multi)}
        clause_workers: list[int | None] = []
        confidence: list[float] = []
        for probs, ask in zip(s.clause_probs, s.asks, strict=True):
            k, conf, ok = _clause_conf(probs, ask, th)
            clause_workers.append(k if ok else None)
            confidence.append(conf)
        by_clause = {k for k in clause_workers if k is not None}
        via_clauses = len(by_clause) >= 2
        chosen = whole | by_clause if via_clauses else set(whole)
        k_none = len(s.single) - 1
        if not chosen and p.max() >= th.min_probability and s.single[k_none] < th.none_probability:
            chosen = {int(np.argmax(p))}
        order = [k for k in dict.fromkeys(clause_workers) if k is not None and k in chosen]
        order += sorted(chosen - set(order), key=lambda k: -p[k])
        return Choice(
            order,
            clause_workers,
            confidence,
            via_clauses and chosen <= by_clause,
            via_clauses,
        )

    # --- persistence -------------------------------------------------------------------

    def save(self, path: Path, meta: dict[str, object]) -> None:
        """Write the model (npz) atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        header = {
            "format": FORMAT,
            "workers": self.workers,
            "thresholds": asdict(self.thresholds),
            "lex_weight": self.lex_weight,
            "meta": meta,
        }
        with tmp.open("wb") as fh:
            np.savez(
                fh,
                header=np.array(json.dumps(header)),
                **{
                    f"{name}_{part}": getattr(head, part)
                    for name, head in (("softmax", self.softmax), ("sigmoid", self.sigmoid))
                    for part in ("dense", "lex", "bias")
                },
            )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> tuple[RouterModel, dict[str, object]]:
        """Read a saved model and its metadata.

        Raises:
            OSError, ValueError, KeyError: The file is missing or not a model of this format.
        """
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            if header.get("format") != FORMAT:
                raise ValueError("another model format")
            heads = {
                name: LinearHead(
                    kind,  # type: ignore[arg-type]
                    data[f"{name}_dense"],
                    data[f"{name}_lex"],
                    data[f"{name}_bias"],
                )
                for name, kind in (("softmax", "softmax"), ("sigmoid", "sigmoid"))
            }
        model = cls(
            header["workers"],
            heads["softmax"],
            heads["sigmoid"],
            Thresholds(**header["thresholds"]),
            float(header["lex_weight"]),
        )
        return model, dict(header.get("meta") or {})


# --- threshold tuning ----------------------------------------------------------------------


def _clause_maxima(scored: Sequence[Scored], clause_none: float) -> tuple[Array, Array]:
    """Per question and worker: best confidence of an asking clause whose none-probability
    is at most ``clause_none``, and best probability of a telling clause."""
    k = len(scored[0].probabilities)
    ask_best = np.zeros((len(scored), k))
    tell_best = np.zeros((len(scored), k))
    for r, s in enumerate(scored):
        for probs, ask in zip(s.clause_probs, s.asks, strict=True):
            w = int(np.argmax(probs[:k]))
            if ask:
                if probs[k] <= clause_none:
                    ask_best[r, w] = max(ask_best[r, w], probs[w] / max(1e-9, 1 - probs[k]))
            else:
                tell_best[r, w] = max(tell_best[r, w], probs[w])
    return ask_best, tell_best


def _choose_all(
    p: Array, none: Array, ask_best: Array, tell_best: Array, th: Thresholds
) -> NDArray[np.bool_]:
    """:meth:`RouterModel.choose` for many questions at once (the chosen set as booleans)."""
    chosen = p >= th.multi
    clause = (ask_best >= th.clause) | (tell_best >= th.statement)
    chosen |= clause & (clause.sum(axis=1) >= 2)[:, None]
    top = np.zeros_like(chosen)
    top[np.arange(len(p)), p.argmax(axis=1)] = True
    fallback = ~chosen.any(axis=1) & (p.max(axis=1) >= th.min_probability)
    fallback &= none < th.none_probability
    out: NDArray[np.bool_] = chosen | (top & fallback[:, None])
    return out


def tune(
    scored: Sequence[Scored],
    truth: NDArray[np.bool_],
    start: Thresholds,
    sweeps: int = 3,
) -> tuple[Thresholds, float]:
    """Thresholds that maximise exact-route accuracy on out-of-fold scored questions.

    Coordinate ascent over :data:`GRID`, from ``start``; on a tie the current value stays.
    ``truth`` is (n, K): the workers each question needs.
    """
    p = np.stack([s.probabilities for s in scored])
    k = p.shape[1]
    none = np.array([s.single[k] for s in scored])
    maxima = {c: _clause_maxima(scored, c) for c in GRID["clause_none"]}
    if start.clause_none not in maxima:
        maxima[start.clause_none] = _clause_maxima(scored, start.clause_none)

    def accuracy(th: Thresholds) -> float:
        chosen = _choose_all(p, none, *maxima[th.clause_none], th)
        return float((chosen == truth).all(axis=1).mean())

    best, best_acc = start, accuracy(start)
    for _ in range(sweeps):
        improved = False
        for name, values in GRID.items():
            for value in values:
                candidate = replace(best, **{name: value})
                acc = accuracy(candidate)
                if acc > best_acc + 1e-12:
                    best, best_acc, improved = candidate, acc, True
        if not improved:
            break
    return best, best_acc
