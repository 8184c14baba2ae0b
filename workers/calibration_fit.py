"""Fitting and judging ``p_correct``: logistic regression, cross-validation, AUROC, ECE and
risk–coverage — in numpy (no scikit-learn).

The model is L2-regularised logistic regression on standardised features, fitted by
Newton's method. Unknown feature values (``nan``, e.g. no log-probabilities) are set to the
feature's mean, so they contribute nothing. Figures are always cross-validated: each
answer's ``p_correct`` comes from a model fitted without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from tandem.workers.calibration import Calibration, threshold_for

__all__ = [
    "RiskPoint",
    "auroc",
    "cross_validated",
    "ece",
    "fit",
    "fit_calibration",
    "folds",
    "predict",
    "risk_coverage",
    "threshold_for",
]

DEFAULT_L2 = 5.0
"""Ridge penalty on the standardised weights. Chosen by nested cross-validation on the
shipped set (benchmarks/RESULTS.md §12: 45 of 50 outer folds chose ridge 5 over 1 for the
shipped features); a stronger pull towards the base rate also suits the smaller labelled
sets ``tandem calibrate`` is given."""


def _np() -> Any:
    import numpy as np

    return np


def fit(
    x: Sequence[Sequence[float]], y: Sequence[int], l2: float = DEFAULT_L2
) -> tuple[list[float], list[float], list[float], float]:
    """Fit ``p = σ(b + w·(x − μ)/s)``; returns ``(μ, s, w, b)``."""
    np = _np()
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    seen = (~np.isnan(xs)).sum(axis=0)
    # A signal missing from every answer (no log-probabilities, no retrieval) is centred at 0.
    mu = np.where(seen > 0, np.nansum(xs, axis=0) / np.maximum(seen, 1), 0.0)
    xs = np.where(np.isnan(xs), mu, xs)
    sd = xs.std(axis=0)
    sd = np.where(sd < 1e-9, 1.0, sd)
    z = np.hstack([(xs - mu) / sd, np.ones((len(xs), 1))])
    w = np.zeros(z.shape[1])
    penalty = np.eye(z.shape[1]) * l2
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(z @ w, -30, 30)))
        grad = z.T @ (p - ys) + penalty @ w
        hess = (z * (p * (1 - p))[:, None]).T @ z + penalty + 1e-9 * np.eye(z.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-9:
            break
    return mu.tolist(), sd.tolist(), w[:-1].tolist(), float(w[-1])


def predict(
    model: tuple[list[float], list[float], list[float], float], x: Sequence[Sequence[float]]
) -> list[float]:
    """``p`` for each row of ``x`` under a model from :func:`fit`."""
    return [float(v) for v in _predict(model, x)]


def _predict(model: tuple[list[float], list[float], list[float], float], x: Any) -> Any:
    np = _np()
    mu, sd, w = (np.asarray(v, dtype=float) for v in model[:3])
    b = model[3]
    xs = np.asarray(x, dtype=float)
    xs = np.where(np.isnan(xs), mu, xs)
    return 1 / (1 + np.exp(-np.clip(((xs - mu) / sd) @ w + b, -30, 30)))


def folds(y: Sequence[int], k: int, seed: int = 0) -> list[int]:
    """Stratified fold numbers (each class spread evenly over the ``k`` folds)."""
    np = _np()
    ys = np.asarray(y)
    rng = np.random.default_rng(seed)
    out = np.zeros(len(ys), dtype=int)
    for cls in (0, 1):
        idx = np.where(ys == cls)[0]
        rng.shuffle(idx)
        out[idx] = np.arange(len(idx)) % k
    return [int(f) for f in out]


def cross_validated(
    x: Sequence[Sequence[float]],
    y: Sequence[int],
    *,
    k: int = 10,
    seed: int = 0,
    l2: float = DEFAULT_L2,
) -> list[float]:
    """Each answer's ``p_correct`` from a model fitted on the other folds."""
    np = _np()
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=int)
    k = max(2, min(k, int(min(ys.sum(), len(ys) - ys.sum())) or 2))
    fold = np.asarray(folds(ys.tolist(), k, seed))
    out = np.zeros(len(ys))
    for f in range(k):
        train, test = fold != f, fold == f
        if test.any():
            out[test] = _predict(fit(xs[train], ys[train], l2), xs[test])
    return [float(p) for p in out]


def auroc(scores: Sequence[float], y: Sequence[int]) -> float | None:
    """Area under the ROC curve (ties count half); ``None`` without both classes."""
    pos = [s for s, t in zip(scores, y, strict=True) if t]
    neg = [s for s, t in zip(scores, y, strict=True) if not t]
    if not pos or not neg:
        return None
    np = _np()
    a, b = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((a > b).sum() + 0.5 * (a == b).sum()) / (len(pos) * len(neg)))


def ece(p: Sequence[float], y: Sequence[int], bins: int = 10) -> float | None:
    """Expected calibration error over ``bins`` equal-width bins."""
    if not p:
        return None
    total = 0.0
    for b in range(bins):
        idx = [i for i, v in enumerate(p) if min(int(v * bins), bins - 1) == b]
        if idx:
            mean_p = sum(p[i] for i in idx) / len(idx)
            mean_y = sum(y[i] for i in idx) / len(idx)
            total += len(idx) / len(p) * abs(mean_p - mean_y)
    return total


class RiskPoint(BaseModel):
    """One row of a risk–coverage table."""

    coverage: float
    """Share of answers kept (the most confident first)."""
    threshold: float
    """The score of the last answer kept."""
    error: float
    """Share of the kept answers that are wrong."""


def risk_coverage(
    scores: Sequence[float],
    y: Sequence[int],
    levels: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
) -> list[RiskPoint]:
    """Error among the answers kept when keeping the top ``coverage`` share by score."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    out = []
    for level in levels:
        n = max(1, round(level * len(order)))
        kept = order[:n]
        out.append(
            RiskPoint(
                coverage=level,
                threshold=round(scores[kept[-1]], 4),
                error=round(sum(1 - y[i] for i in kept) / n, 4),
            )
        )
    return out


def fit_calibration(
    rows: Sequence[dict[str, float | None]],
    y: Sequence[int],
    features: Sequence[str],
    *,
    model: str,
    worker: str | None = None,
    embed_model: str = "",
    prompt: str = "",
    source: str = "",
    l2: float = DEFAULT_L2,
    seed: int = 0,
) -> Calibration:
    """Fit a :class:`Calibration` on labelled answers' feature values, with its
    cross-validated curve, AUROC and ECE."""
    x = [[float("nan") if r.get(f) is None else float(r[f] or 0.0) for f in features] for r in rows]
    mu, sd, w, b = fit(x, y, l2)
    cv = cross_validated(x, y, seed=seed, l2=l2)
    return Calibration(
        model=model,
        worker=worker,
        features=list(features),
        mean=[round(v, 6) for v in mu],
        scale=[round(v, 6) for v in sd],
        weights=[round(v, 6) for v in w],
        bias=round(b, 6),
        questions=len(y),
        right=int(sum(y)),
        auroc=auroc(cv, y),
        ece=ece(cv, y),
        curve=[(round(p, 4), int(t)) for p, t in zip(cv, y, strict=True)],
        embed_model=embed_model,
        prompt=prompt,
        source=source,
    )
