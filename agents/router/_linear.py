"""Small linear models in numpy for the router: L2-regularised logistic regression.

Two heads share one feature layout — the sentence embedding (dense) next to hashed word
features (sparse, :mod:`._text`): a *softmax* over the workers plus "none" (which single
specialist a text is about, or none) and independent *sigmoids*, one per worker (whether
the question needs that specialist at all: several may pass, or none). Both are fitted by
L-BFGS on the weighted log-loss; a few thousand rows fit in well under a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from tandem.agents.router._text import LEX_DIM

__all__ = ["Features", "LinearHead", "fit_head"]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Features:
    """Rows of features: ``dense`` (n, d) plus sparse word features ``(rows, cols, vals)``."""

    dense: Array
    rows: NDArray[np.int64]
    cols: NDArray[np.int64]
    vals: Array

    @property
    def n(self) -> int:
        return int(self.dense.shape[0])

    def take(self, index: NDArray[np.int64]) -> Features:
        """The rows ``index`` (in that order)."""
        pos = np.full(self.n, -1, dtype=np.int64)
        pos[index] = np.arange(len(index))
        keep = pos[self.rows] >= 0
        return Features(self.dense[index], pos[self.rows[keep]], self.cols[keep], self.vals[keep])

    @staticmethod
    def stack(parts: list[Features]) -> Features:
        """The rows of several feature blocks, one after the other."""
        offsets = np.cumsum([0] + [p.n for p in parts[:-1]])
        return Features(
            np.vstack([p.dense for p in parts]),
            np.concatenate([p.rows + o for p, o in zip(parts, offsets, strict=True)]),
            np.concatenate([p.cols for p in parts]),
            np.concatenate([p.vals for p in parts]),
        )


@dataclass(frozen=True)
class LinearHead:
    """Fitted weights: ``dense`` (d, C), ``lex`` (LEX_DIM, C), ``bias`` (C,)."""

    kind: Literal["softmax", "sigmoid"]
    dense: Array
    lex: Array
    bias: Array

    def logits(self, x: Features) -> Array:
        z = x.dense @ self.dense + self.bias
        for c in range(z.shape[1]):
            z[:, c] += np.bincount(x.rows, weights=x.vals * self.lex[x.cols, c], minlength=x.n)
        return z

    def predict(self, x: Features) -> Array:
        """Probabilities (n, C): rows sum to 1 for a softmax head."""
        z = self.logits(x)
        if self.kind == "sigmoid":
            out: Array = 1.0 / (1.0 + np.exp(-z))
            return out
        z -= z.max(axis=1, keepdims=True)
        p: Array = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return p


def _lbfgs(
    f: Callable[[Array], tuple[float, Array]], x0: Array, iters: int, memory: int = 10
) -> Array:
    """Minimise a smooth convex ``f`` (value, gradient) by L-BFGS with backtracking."""
    x = x0.copy()
    fx, g = f(x)
    s_hist: list[Array] = []
    y_hist: list[Array] = []
    for _ in range(iters):
        q = g.copy()
        alphas = []
        for s, y in zip(reversed(s_hist), reversed(y_hist), strict=True):
            a = float(s @ q) / float(y @ s)
            alphas.append(a)
            q -= a * y
        if s_hist:
            q *= float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1])
        for (s, y), a in zip(zip(s_hist, y_hist, strict=True), reversed(alphas), strict=True):
            q += s * (a - float(y @ q) / float(y @ s))
        d = -q
        gd = float(g @ d)
        if gd >= 0:  # not a descent direction: restart from the gradient
            d, gd = -g, -float(g @ g)
            s_hist, y_hist = [], []
        t = 1.0
        while True:
            xn = x + t * d
            fn, gn = f(xn)
            if fn <= fx + 1e-4 * t * gd or t < 1e-10:
                break
            t *= 0.5
        s, y = xn - x, gn - g
        if float(s @ y) > 1e-12:
            s_hist.append(s)
            y_hist.append(y)
            if len(s_hist) > memory:
                s_hist.pop(0)
                y_hist.pop(0)
        converged = abs(fx - fn) <= 1e-7 * max(1.0, abs(fx))
        x, fx, g = xn, fn, gn
        if converged or float(np.abs(g).max()) < 1e-6:
            break
    return x


def fit_head(
    x: Features,
    targets: Array,
    weights: Array,
    *,
    kind: Literal["softmax", "sigmoid"],
    l2: float,
    iters: int = 300,
) -> LinearHead:
    """Fit a head on ``targets`` (n, C): soft labels summing to 1 (softmax) or 0/1 per column.

    ``weights`` (n,) are normalised to sum to 1, so ``l2`` does not depend on the row count.
    """
    d = x.dense.shape[1]
    c = targets.shape[1]
    w = weights / weights.sum()
    size_d, size_l = d * c, LEX_DIM * c

    def unpack(theta: Array) -> LinearHead:
        return LinearHead(
            kind,
            theta[:size_d].reshape(d, c),
            theta[size_d : size_d + size_l].reshape(LEX_DIM, c),
            theta[size_d + size_l :],
        )

    def f(theta: Array) -> tuple[float, Array]:
        head = unpack(theta)
        z = head.logits(x)
        if kind == "softmax":
            z -= z.max(axis=1, keepdims=True)
            log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            loss = -float((w[:, None] * targets * log_p).sum())
            grad_z = w[:, None] * (np.exp(log_p) - targets)
        else:
            loss = float((w[:, None] * (np.logaddexp(0.0, z) - targets * z)).sum())
            grad_z = w[:, None] * (1.0 / (1.0 + np.exp(-z)) - targets)
        reg = 0.5 * l2 * (float((head.dense**2).sum()) + float((head.lex**2).sum()))
        g_dense = x.dense.T @ grad_z + l2 * head.dense
        g_lex = np.empty((LEX_DIM, c))
        for k in range(c):
            g_lex[:, k] = np.bincount(x.cols, weights=x.vals * grad_z[x.rows, k], minlength=LEX_DIM)
        g_lex += l2 * head.lex
        grad = np.concatenate([g_dense.ravel(), g_lex.ravel(), grad_z.sum(axis=0)])
        return loss + reg, grad

    theta = _lbfgs(f, np.zeros(size_d + size_l + c), iters)
    return unpack(theta)
