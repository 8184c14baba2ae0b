"""``p_correct``: the calibrated probability that a worker's answer is right.

A small logistic model over an answer's :class:`~tandem.workers.records.AnswerSignals`
(``p = σ(b + Σ wᵢ·(xᵢ − μᵢ)/sᵢ)``), fitted on labelled questions
(:mod:`tandem.workers.calibration_fit`, ``tandem calibrate``). Each fitted model keeps
its cross-validated predictions (``curve``), so the threshold that keeps the error among
local answers under a target (``[cascade] max_local_error``) — and the share of answers it
keeps — is read off data the model was not fitted on.

Where a worker's calibration comes from, first match wins:

1. ``<data_dir>/calibration/<model>.json`` written by ``tandem calibrate``: the worker's
   own fit, else that model's pooled fit;
2. the shipped fit for the bundled worker model and embedder
   (``workers/builtin/calibration.json``, see ``benchmarks/fit_calibration.py``);
3. otherwise the shipped *generic* fit (grounding and self-report only: token
   log-probabilities and retrieval scores are not comparable across models and
   embedders). It is not calibrated for that model, so the cascade then also requires
   every grounding check to pass (see :mod:`tandem.graphs.cascade`) — ``tandem doctor``
   says so.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from tandem.workers.errors import ConfigError
from tandem.workers.records import AnswerSignals

__all__ = [
    "FEATURES",
    "Calibration",
    "CalibrationFile",
    "Decision",
    "feature_values",
    "find_calibration",
    "load_file",
    "prompt_fingerprint",
    "shipped",
    "threshold_for",
]

FEATURES: dict[str, str] = {
    "logprob_mean": "mean log-probability of the answer's tokens",
    "logprob_min": "the least likely answer token",
    "logprob_p10": "10th percentile of the answer tokens' log-probabilities",
    "top_entropy": "how spread the model's likeliest words were",
    "top_margin": "the answer's words' lead over the likeliest alternatives",
    "retrieval_best": "similarity of the best passage",
    "retrieval_margin": "best passage's lead over the second",
    "span_support": "share of the answer's figures and names found in the cited passages",
    "unsupported": "figures or names not found in the cited passages",
    "unsupported_anywhere": "figures or names found in no passage",
    "has_spans": "the answer states a figure or a name",
    "not_covered": 'the answer says "not covered"',
    "no_citation": "the answer cites no passage",
    "question_overlap": "the answer mostly restates the question",
    "ask_support": "share of the answer's terms in the passage sentences that match the question",
    "answer_locus": "how closely the passage sentence holding the answer matches the question",
    "kind_missing": "the answer states no quantity of the kind the question asks for",
    "log_words": "length of the answer",
    "self_confidence": "the model's own confidence",
    "needs_escalation": "the model asked to escalate",
    "cut_or_repaired": "the reply was cut off or needed a repair",
}
"""Every feature a calibration may use, with what it means (for notes and docs)."""


def feature_values(s: AnswerSignals) -> dict[str, float | None]:
    """The features of one answer (``None``: unknown, e.g. no log-probabilities)."""
    spans = len(s.spans)
    return {
        "logprob_mean": s.logprob_mean,
        "logprob_min": s.logprob_min,
        "logprob_p10": s.logprob_p10,
        "top_entropy": s.top_entropy,
        "top_margin": s.top_margin,
        "retrieval_best": s.retrieval_best,
        "retrieval_margin": s.retrieval_margin,
        "span_support": 1 - len(s.unsupported) / spans if spans else 1.0,
        "unsupported": float(len(s.unsupported)),
        "unsupported_anywhere": float(len(s.unsupported_anywhere)),
        "has_spans": float(spans > 0),
        "not_covered": float(s.not_covered),
        "no_citation": float(s.citations == 0),
        "question_overlap": s.question_overlap,
        "ask_support": s.ask_support,
        "answer_locus": s.answer_locus,
        "kind_missing": float(s.kind_missing),
        "log_words": math.log1p(s.answer_words),
        "self_confidence": s.self_confidence,
        "needs_escalation": float(s.needs_escalation),
        "cut_or_repaired": float(s.truncated or s.repaired),
    }


def prompt_fingerprint(text: str) -> str:
    """A short digest of the worker prompt rules a calibration was fitted under."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:12]


class Decision(BaseModel):
    """What a calibration says about one answer under a threshold."""

    p_correct: float
    threshold: float
    keep: bool
    why: list[str] = Field(default_factory=list)
    """When not kept: the signals that pulled ``p_correct`` down most, in words."""


class Calibration(BaseModel):
    """One fitted logistic model, with the cross-validated predictions it was judged by."""

    model: str
    """The worker model it was fitted for (``*``: any model — the generic fit)."""
    worker: str | None = None
    """The worker it was fitted for; ``None``: every worker of ``model``."""
    embed_model: str = ""
    """The embedding model retrieval used when it was fitted (scores depend on it)."""
    prompt: str = ""
    """:func:`prompt_fingerprint` of the worker rules it was fitted under."""
    features: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    questions: int = 0
    """Labelled answers it was fitted on."""
    right: int = 0
    """How many of them were right."""
    auroc: float | None = None
    """Cross-validated AUROC of ``p_correct`` on the fitting set."""
    ece: float | None = None
    """Cross-validated expected calibration error."""
    source: str = ""
    """Where it came from (the dataset, or ``shipped``)."""
    curve: list[tuple[float, int]] = Field(default_factory=list)
    """Cross-validated ``(p_correct, right)`` per fitting answer, for thresholds."""

    def p_correct(self, signals: AnswerSignals) -> float:
        """The probability that the answer with these signals is right."""
        return _sigmoid(self.bias + sum(c for _, c in self._contributions(signals)))

    def _contributions(self, signals: AnswerSignals) -> list[tuple[str, float]]:
        values = feature_values(signals)
        out = []
        for name, mu, sd, w in zip(self.features, self.mean, self.scale, self.weights, strict=True):
            x = values.get(name)
            z = 0.0 if x is None or math.isnan(x) else (x - mu) / (sd or 1.0)
            out.append((name, w * z))
        return out

    def explain(self, signals: AnswerSignals, limit: int = 2) -> list[str]:
        """The signals that pull this answer's ``p_correct`` down most, in words."""
        worst = sorted((c, n) for n, c in self._contributions(signals) if c < -0.25)
        return [_describe(n, signals) for _, n in worst[:limit]]

    def threshold_for(self, max_local_error: float) -> tuple[float, float] | None:
        """The lowest threshold whose kept answers (cross-validated) are at most
        ``max_local_error`` wrong, and the share of answers it keeps; ``None`` if none is."""
        return threshold_for(self.curve, max_local_error)


def threshold_for(
    curve: Sequence[tuple[float, int]], max_local_error: float
) -> tuple[float, float] | None:
    """See :meth:`Calibration.threshold_for`."""
    pts = sorted(curve, key=lambda pr: -pr[0])
    best: tuple[float, float] | None = None
    wrong = 0
    for i, (p, right) in enumerate(pts):
        wrong += 0 if right else 1
        tie = i + 1 < len(pts) and pts[i + 1][0] == p
        if not tie and wrong / (i + 1) <= max_local_error:
            best = (p, (i + 1) / len(pts))
    return best


_KIND_WORDS = {"duration": "a time span", "percentage": "a percentage", "amount": "an amount"}


def _describe(name: str, s: AnswerSignals) -> str:
    if name in ("unsupported", "span_support") and s.unsupported:
        return f"answer's {s.unsupported[0]} not found in the cited passage"
    if name == "unsupported_anywhere" and s.unsupported_anywhere:
        return f"answer's {s.unsupported_anywhere[0]} not found in any passage"
    if name == "ask_support" and s.ask_support is not None:
        return (
            f"only {s.ask_support:.0%} of the answer's terms are in the passage sentences "
            "that match the question"
        )
    if name == "answer_locus" and s.answer_locus is not None:
        return (
            "the passage sentence holding the answer is about something else than the "
            f"question (similarity {s.answer_locus:.2f})"
        )
    if name == "kind_missing" and s.asked_kind:
        asked = _KIND_WORDS.get(s.asked_kind, s.asked_kind)
        return f"the question asks for {asked}; the answer gives none"
    if name == "not_covered":
        return "the answer says the passages do not cover it"
    if name == "no_citation":
        return "the answer cites no passage"
    if name.startswith("logprob") and s.logprob_mean is not None:
        return f"the model was unsure of its words (mean log-probability {s.logprob_mean:.2f})"
    if name == "top_entropy" and s.top_entropy is not None:
        return f"the model wavered between words (entropy {s.top_entropy:.2f})"
    if name == "top_margin" and s.top_margin is not None:
        return f"the model's words barely led their alternatives (lead {s.top_margin:.2f})"
    if name.startswith("retrieval") and s.retrieval_best is not None:
        return f"no passage matches the question well (best {s.retrieval_best:.2f})"
    if name == "self_confidence":
        return f"the model's own confidence is {s.self_confidence:.2f}"
    if name == "needs_escalation":
        return "the model asked to escalate"
    if name == "cut_or_repaired":
        return "the reply was cut off or malformed"
    return FEATURES.get(name, name)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


class CalibrationFile(BaseModel):
    """Calibrations for one worker model: pooled, and per worker when there was enough data."""

    version: Literal[1] = 1
    model: str
    pooled: Calibration | None = None
    workers: dict[str, Calibration] = Field(default_factory=dict)

    def for_worker(self, worker: str) -> Calibration | None:
        return self.workers.get(worker) or self.pooled


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model)


def calibration_path(data_dir: Path, model: str) -> Path:
    """Where ``tandem calibrate`` stores the calibration of ``model``."""
    return data_dir / "calibration" / f"{_slug(model)}.json"


def load_file(path: Path) -> CalibrationFile:
    """Read a calibration file.

    Raises:
        ConfigError: It is unreadable or not a calibration file.
    """
    try:
        return CalibrationFile.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the calibration {path}: {str(exc).splitlines()[0]}",
            hint="re-create it with `tandem calibrate DATA.jsonl`, or delete it",
        ) from None


class Shipped(BaseModel):
    """The fits that ship with tandem (``workers/builtin/calibration.json``)."""

    bundled: Calibration
    """For the bundled worker model, embedder and prompt."""
    generic: Calibration
    """Without log-probabilities: the conservative fallback for any other model."""


_SHIPPED: list[Shipped] = []


def shipped() -> Shipped:
    """The shipped fits (read once)."""
    if not _SHIPPED:
        text = (resources.files("tandem.workers.builtin") / "calibration.json").read_text("utf-8")
        _SHIPPED.append(Shipped.model_validate(json.loads(text)))
    return _SHIPPED[0]


Origin = Literal["user", "shipped", "generic"]


def find_calibration(
    data_dir: Path | None, worker: str, model: str, embed_model: str, prompt: str
) -> tuple[Calibration, Origin, str]:
    """The calibration a worker uses, where it came from, and a warning when it may not fit
    (fitted under another embedder or prompt; or none exists for the model)."""
    if data_dir is not None:
        path = calibration_path(data_dir, model)
        if path.is_file():
            found = load_file(path).for_worker(worker)
            if found is not None:
                return found, "user", _staleness(found, embed_model, prompt)
    ship = shipped()
    if ship.bundled.model == model:
        return ship.bundled, "shipped", _staleness(ship.bundled, embed_model, prompt)
    return (
        ship.generic,
        "generic",
        f"no calibration for {model}: a local answer must also pass every grounding check; "
        "run `tandem calibrate DATA.jsonl` to fit one",
    )


def _staleness(cal: Calibration, embed_model: str, prompt: str) -> str:
    if cal.embed_model and cal.embed_model != embed_model:
        return (
            f"fitted with embeddings from {cal.embed_model}, retrieval now uses {embed_model}: "
            "re-fit with `tandem calibrate DATA.jsonl`"
        )
    if cal.prompt and cal.prompt != prompt:
        return "fitted under another worker prompt: re-fit with `tandem calibrate DATA.jsonl`"
    return ""
