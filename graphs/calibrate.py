"""``tandem calibrate DATA.jsonl``: fit ``p_correct`` on a user's own labelled questions.

Each single-specialist question of the dataset (the ``tandem eval`` format) is put to its
specialist directly — retrieval, prompt and model exactly as in a run, no router and no
supervisor — and the answer is labelled right when it holds every reference fact
(case-insensitive, whitespace-normalised, as ``tandem eval`` checks), wrong when it misses
one or the question is marked ``"answerable": false``. A logistic model is fitted per
worker model (pooled over its workers) and, with ``per="worker"``, per worker that has
enough answers of both kinds; the result is stored under
``<data_dir>/calibration/<model>.json`` and used by the next run automatically.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from tandem.graphs.evaluate import EvalCase, fact_in
from tandem.graphs.runtime import Runtime
from tandem.workers.calibration import (
    Calibration,
    CalibrationFile,
    calibration_path,
    feature_values,
    prompt_fingerprint,
    shipped,
)
from tandem.workers.calibration_fit import auroc, fit_calibration
from tandem.workers.errors import UsageError
from tandem.workers.records import AnswerSignals, Subtask
from tandem.workers.worker import RULES, worker_rules

__all__ = ["Sample", "collect", "fit_samples", "label", "save", "self_auroc"]

MIN_PER_WORKER = 40
"""A worker gets its own fit only with at least this many answers …"""
MIN_PER_CLASS = 8
"""… and this many right and wrong ones (else it uses its model's pooled fit)."""


def label(case: EvalCase, answer: str) -> bool | None:
    """Whether a local answer to ``case`` is right (``None``: nothing to judge it by)."""
    if case.answerable is False:
        return False
    if not case.facts:
        return None
    return all(fact_in(f, answer) for f in case.facts)


class Sample(BaseModel):
    """One labelled local answer."""

    question: str
    worker: str
    model: str
    answer: str
    right: bool
    signals: AnswerSignals
    p_correct: float | None = None
    """What the calibration in use said (before re-fitting)."""
    seconds: float = 0.0
    """The worker's time for this answer (retrieval + model)."""
    prompt: str = ""
    """:func:`~tandem.workers.calibration.prompt_fingerprint` of the worker's rules."""


async def collect(
    rt: Runtime,
    cases: Sequence[EvalCase],
    *,
    workers: Sequence[str] = (),
    on_sample: Callable[[int, Sample | None], None] | None = None,
) -> list[Sample]:
    """Ask each single-specialist question of ``cases`` to its specialist; label the answers.

    Questions for several specialists, for none, for an unknown one or outside ``workers``
    are skipped, as are those without facts (unless marked unanswerable) and failed runs.
    """
    import time

    out: list[Sample] = []
    for i, case in enumerate(cases):
        sample = None
        name = case.expected_workers[0] if len(case.expected_workers) == 1 else ""
        worker = rt.workers.get(name)
        wanted = worker is not None and (not workers or name in workers)
        if worker is not None and wanted and (case.facts or case.answerable is False):
            await rt.ensure_ingested([name])
            started = time.perf_counter()
            run = await worker.run(
                Subtask(worker=name, instruction=case.question, query=case.question)
            )
            result = run.result
            right = label(case, result.answer)
            if result.status == "ok" and result.signals is not None and right is not None:
                sample = Sample(
                    question=case.question,
                    worker=name,
                    model=result.model,
                    answer=result.answer,
                    right=right,
                    signals=result.signals,
                    p_correct=result.p_correct,
                    seconds=round(time.perf_counter() - started, 3),
                    prompt=prompt_fingerprint(worker_rules(worker.spec)),
                )
                out.append(sample)
        if on_sample is not None:
            on_sample(i, sample)
    return out


def fit_samples(
    samples: Sequence[Sample],
    model: str,
    *,
    embed_model: str,
    source: str,
    per: Literal["worker", "model"] = "worker",
) -> CalibrationFile:
    """Fit the calibration file of one model from its labelled answers."""
    mine = [s for s in samples if s.model == model]
    if len({s.right for s in mine}) < 2:
        kind = "right" if mine and mine[0].right else "wrong"
        raise UsageError(
            f"{model}: {len(mine)} labelled answers, all {kind}",
            hint="a calibration needs right and wrong answers: add questions the corpus does "
            'not answer ("answerable": false) or harder ones',
        )
    with_logprobs = any(s.signals.logprob_mean is not None for s in mine)
    features = (shipped().bundled if with_logprobs else shipped().generic).features

    def fit(rows: Sequence[Sample], worker: str | None) -> Calibration:
        # The rules most of them were answered under (the default rules for old samples).
        said = Counter(s.prompt or prompt_fingerprint(RULES) for s in rows)
        prompt = said.most_common(1)[0][0]
        return fit_calibration(
            [feature_values(s.signals) for s in rows],
            [int(s.right) for s in rows],
            features,
            model=model,
            worker=worker,
            embed_model=embed_model,
            prompt=prompt,
            source=source,
        )

    out = CalibrationFile(model=model, pooled=fit(mine, None))
    if per == "worker":
        for name in sorted({s.worker for s in mine}):
            rows = [s for s in mine if s.worker == name]
            right = sum(s.right for s in rows)
            if len(rows) >= MIN_PER_WORKER and min(right, len(rows) - right) >= MIN_PER_CLASS:
                out.workers[name] = fit(rows, name)
    return out


def save(data_dir: Path, fitted: CalibrationFile) -> Path:
    """Write a model's calibration where runs pick it up; returns the path."""
    path = calibration_path(data_dir, fitted.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(fitted.model_dump(), indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def self_auroc(samples: Sequence[Sample]) -> float | None:
    """AUROC of the models' self-reported confidence on the labelled answers."""
    return auroc([s.signals.self_confidence for s in samples], [int(s.right) for s in samples])
