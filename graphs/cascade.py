"""When a direct answer stays local: escalation by risk, from a calibrated ``p_correct``.

A direct answer is kept when its ``p_correct`` (see :mod:`tandem.workers.calibration`)
reaches the worker's threshold, the higher of

* the spec's ``min_confidence`` (it applies to ``p_correct``, no longer to the model's
  self-reported confidence), and
* with ``[cascade] max_local_error`` set (default 0.05), the lowest threshold at which the
  calibration's cross-validated answers kept local were at most that share wrong.

Without a calibration fitted for the worker's model (``tandem calibrate``), the risk target
cannot be read off anything, so the conservative default applies: ``p_correct`` from the
generic fit must reach ``min_confidence`` *and* the answer must pass every check a
calibration would only weigh — the model did not ask to escalate and reports at least
``min_confidence``, it cites a passage, every figure and name it states is in the passages
it cites, it does not say "not covered", and it was not cut off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tandem.graphs.config import CascadeSettings
from tandem.workers.calibration import (
    Calibration,
    Origin,
    find_calibration,
    prompt_fingerprint,
)
from tandem.workers.records import WorkerResult
from tandem.workers.spec import WorkerSpec
from tandem.workers.worker import worker_rules

__all__ = ["WorkerCascade", "decide", "resolve", "trusted_memory"]


@dataclass(frozen=True)
class WorkerCascade:
    """A worker's calibration and the threshold its direct answers must reach."""

    calibration: Calibration
    origin: Origin
    """``user`` (``tandem calibrate``), ``shipped`` (bundled model) or ``generic``."""
    threshold: float
    coverage: float | None
    """Share of the calibration's answers kept at ``threshold`` (``None``: no risk target)."""
    warning: str = ""
    """Why this calibration may not fit (another embedder or prompt; none for the model)."""
    max_local_error: float | None = None
    """The risk target the threshold was chosen for (``[cascade] max_local_error``)."""

    def describe(self) -> str:
        """One line for ``tandem doctor``."""
        cal = self.calibration
        where = {"user": "fitted by `tandem calibrate`", "shipped": "shipped default"}.get(
            self.origin, "none for this model: generic fit + grounding checks,"
        )
        auc = f", AUROC {cal.auroc:.2f}" if cal.auroc is not None else ""
        keeps = f", keeps {self.coverage:.0%} local" if self.coverage is not None else ""
        return f"{where} on {cal.questions} questions{auc}; p_correct ≥ {self.threshold:.2f}{keeps}"


def resolve(
    spec: WorkerSpec,
    model: str,
    embed_model: str,
    settings: CascadeSettings,
    data_dir: Path | None,
) -> WorkerCascade:
    """The calibration and threshold for ``spec`` answering with ``model``."""
    cal, origin, warning = find_calibration(
        data_dir, spec.name, model, embed_model, prompt_fingerprint(worker_rules(spec))
    )
    threshold, coverage = spec.min_confidence, None
    if settings.max_local_error is not None and origin != "generic":
        found = cal.threshold_for(settings.max_local_error)
        if found is None:  # no threshold meets the target: nothing stays local
            threshold, coverage = 1.0, 0.0
        else:
            threshold, coverage = max(threshold, found[0]), found[1]
    target = settings.max_local_error if coverage is not None else None
    return WorkerCascade(cal, origin, round(threshold, 4), coverage, warning, target)


def decide(result: WorkerResult, cascade: WorkerCascade | None, min_confidence: float) -> str:
    """Why a direct answer must escalate, or ``""`` when it may stay local."""
    if result.status != "ok":
        return result.reason or "the worker failed"
    if result.p_correct is None or result.signals is None or cascade is None:
        # No signals (a result from elsewhere): the model's own word, as before calibration.
        if result.needs_escalation:
            return "asked to escalate"
        if result.confidence < min_confidence:
            return f"confidence {result.confidence:.2f} < {min_confidence:.2f}"
        return ""
    if cascade.origin == "generic":
        failed = _grounding_rules(result, min_confidence)
        if failed:
            return f"no calibration for {result.model}: {failed}"
    if result.p_correct >= cascade.threshold:
        return ""
    why = cascade.calibration.explain(result.signals)
    detail = f": {'; '.join(why)}" if why else ""
    if cascade.coverage == 0.0 and cascade.max_local_error is not None:
        # No threshold meets the risk target: say that, not "< 1.00".
        return (
            f"p_correct {result.p_correct:.2f}; no threshold keeps {result.model}'s answers "
            f"within [cascade] max_local_error = {cascade.max_local_error:g} on its "
            f"calibration, so every direct answer escalates{detail}"
        )
    return f"p_correct {result.p_correct:.2f} < {cascade.threshold:.2f}{detail}"


def _grounding_rules(result: WorkerResult, min_confidence: float) -> str:
    """The first grounding check a result fails (the conservative default), or ``""``."""
    s = result.signals
    if s is None:
        return "no signals"
    if s.needs_escalation:
        return "the model asked to escalate"
    if s.self_confidence < min_confidence:
        return f"the model's confidence {s.self_confidence:.2f} < {min_confidence:.2f}"
    if s.not_covered:
        return "the answer says the passages do not cover it"
    if not s.citations:
        return "the answer cites no passage"
    if s.unsupported:
        return f"answer's {s.unsupported[0]} not found in the cited passage"
    if s.truncated:
        return "the reply was cut off"
    return ""


MIN_MEMORY_OVERLAP = 0.5
"""Share of a memory-grounded answer's content words that its learned passage must hold."""


def trusted_memory(result: WorkerResult, trust_above: float | None) -> str:
    """A note when a direct answer may stay local because it rests on an approved learned
    passage (``[learning] trust_memory_above``), else ``""``.

    The learned passage is the supervisor's earlier answer to a question this close, kept by
    the approval policy; an answer that cites it, states nothing it does not back and
    mostly repeats it is that answer again — its risk is the passage's, not the small
    model's — unless the question asks something else in the recorded question's words
    (``MemoryGrounding.asks_else``: a new name or figure, a swapped word). An answer made
    only of the question's own words is not: it repeats the question, not the passage. A passage
    that conflicts with the curated corpus is never trusted this way.
    """
    m = result.memory
    if trust_above is None or m is None or result.status != "ok":
        return ""
    s = result.signals
    if m.conflict or m.similarity < trust_above or m.unsupported or m.asks_else:
        return ""
    if m.overlap < MIN_MEMORY_OVERLAP or result.needs_escalation:
        return ""
    if s is not None and (s.not_covered or s.truncated or s.needs_escalation):
        return ""
    if s is not None and s.question_overlap >= 1.0:
        return ""  # an echo of the question ("HMO" to "What does HMO stand for?") says nothing
    return f"answered from learned memory (record {m.record}, similarity {m.similarity:.2f})"
