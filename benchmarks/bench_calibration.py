"""(12) Calibration: is a local answer right? ``p_correct`` against the self-reported confidence.

Reads the answers cached by ``collect_calibration.py`` (the bundled 0.5B specialists on
``benchmarks/data/calibration.jsonl``: 148 answerable questions, 54 in-domain but not
answerable from the corpora; the collector takes them in an evenly spread order, so a run
cut short is a fair sample — the notes give the count) and never runs a model. Every
figure is cross-validated, never scored on the answers a model was fitted on:

* AUROC / ECE of ``p_correct`` (10-fold, stratified, 20 seeds — each answer scored by a model
  fitted without it) and of the self-reported confidence on the same answers;
* the risk–coverage table (keep the top share by score; error among the kept);
* the policy of ``[cascade] max_local_error``: in each outer fold the threshold is chosen
  on the other folds' own cross-validated predictions, then applied to the held-out fold —
  the share of *answerable* questions kept local and the error among all kept answers;
* the labels: fact matching (``fact_in``) counts a number with a unit as stated when the
  answer gives that number alone (``30`` for ``30 days``); the notes count the answers
  right only by that rule, and the most a perfect ranker could keep under the risk target
  given how many answers are right at all (the ceiling on coverage);
* the feature set and ridge, chosen by nested CV among ``fit_calibration.CANDIDATES``
  (the choice made inside each outer fold, scored on the held-out fold), beside the fixed
  shipped set, the first round's (all 16 signals, ridge 1), the second round's and the
  shipped set without ``ask_support`` or ``answer_locus`` (an ablation).
  The signals were designed while looking at these answers, so the figures are somewhat
  optimistic for new questions — hence the held-out line below. AUROC is given as mean ±
  spread over the seeds' pooled predictions, and the spread of the per-fold AUROC (folds
  of ~17 answers);
* the cost of the signals (their computation time against the worker call's; the
  sentence re-ranking re-measured here with an empty cache for every answer);
* held out: with ``results/calibration_answers_holdout.jsonl`` present (the 34 questions
  the design cache lacks, collected only after the third round's signal was designed), the
  second and third rounds' sets are fitted on all design answers and scored there: AUROC,
  the error among the top 20 % / 30 % by ``p_correct``, and what the ``max_local_error``
  threshold keeps (34 answers: a few answers move these figures a lot);
* with ``results/calibration_answers_before.jsonl`` present, fact recall before/after the
  concise-specialist prompt on the same questions.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from pathlib import Path

from _calibration_data import Answer, load_answers
from _common import HERE, BenchResult, Figure
from fit_calibration import FIRST_ROUND, GENERIC_FEATURES, ROUND_THREE, ROUND_TWO, nested_choice

from tandem.workers.calibration import shipped, threshold_for
from tandem.workers.calibration_fit import (
    DEFAULT_L2,
    auroc,
    cross_validated,
    ece,
    fit,
    fit_calibration,
    folds,
    predict,
    risk_coverage,
)

ANSWERS = HERE / "results" / "calibration_answers.jsonl"
HOLDOUT = HERE / "results" / "calibration_answers_holdout.jsonl"
"""Answers to the questions :data:`ANSWERS` lacks, collected after the third round's signals
were designed (``collect_calibration.py --holdout``)."""
BEFORE = HERE / "results" / "calibration_answers_before.jsonl"
EVIDENCE = HERE / "results" / "calibration_answers_evidence.jsonl"
"""The same questions with ``WorkerSpec.evidence = 2`` (``collect_calibration.py --evidence
2 --out …``): the two passage sentences that match the question best quoted again."""
SEEDS = tuple(range(20))
"""Repeats of every cross-validation (the policy's error among a dozen kept answers moves by
±6 points from one fold split to the next: five repeats were not enough)."""
TARGET = 0.05


def matrix(answers: Sequence[Answer], features: Sequence[str]) -> list[list[float]]:
    return [
        [
            float("nan") if a.features.get(f) is None else float(a.features[f] or 0.0)
            for f in features
        ]
        for a in answers
    ]


def policy(
    answers: Sequence[Answer], features: Sequence[str], *, seed: int, l2: float = DEFAULT_L2
) -> tuple[float, float, int]:
    """Nested CV of the max-local-error policy: (answerable kept share, error among kept, kept)."""
    scored = [a for a in answers if a.signals is not None]
    x, y = matrix(scored, features), [int(a.right) for a in scored]
    fold = folds(y, 10, seed)
    keep = [False] * len(scored)
    for f in range(10):
        train = [i for i in range(len(y)) if fold[i] != f]
        inner = cross_validated(
            [x[i] for i in train], [y[i] for i in train], k=5, seed=seed + 1, l2=l2
        )
        found = threshold_for(list(zip(inner, [y[i] for i in train], strict=True)), TARGET)
        if found is None:
            continue
        model = fit([x[i] for i in train], [y[i] for i in train], l2)
        test = [i for i in range(len(y)) if fold[i] == f]
        for i, p in zip(test, predict(model, [x[i] for i in test]), strict=True):
            keep[i] = p >= found[0]
    answerable = sum(a.answerable for a in answers)  # failed answers count, never kept
    kept_answerable = sum(k and a.answerable for k, a in zip(keep, scored, strict=True))
    kept = sum(keep)
    wrong = sum(k and not a.right for k, a in zip(keep, scored, strict=True))
    return kept_answerable / answerable, (wrong / kept if kept else 0.0), kept


def evaluate(
    answers: Sequence[Answer], features: Sequence[str], l2: float = DEFAULT_L2
) -> dict[str, float]:
    """Cross-validated figures of one feature set (means over :data:`SEEDS`)."""
    scored = [a for a in answers if a.signals is not None]
    x, y = matrix(scored, features), [int(a.right) for a in scored]
    aucs, eces, covs, errs, per_fold = [], [], [], [], []
    for seed in SEEDS:
        p = cross_validated(x, y, seed=seed, l2=l2)
        aucs.append(auroc(p, y) or 0.0)
        fold = folds(y, 10, seed)
        for f in range(10):
            part = [i for i in range(len(y)) if fold[i] == f]
            per_fold.append(auroc([p[i] for i in part], [y[i] for i in part]) or 0.0)
        eces.append(ece(p, y) or 0.0)
        cov, err, _ = policy(answers, features, seed=seed, l2=l2)
        covs.append(cov)
        errs.append(err)
    return {
        "auroc": statistics.mean(aucs),
        "auroc_sd": statistics.pstdev(aucs),
        "fold_sd": statistics.pstdev(per_fold),
        "ece": statistics.mean(eces),
        "coverage": statistics.mean(covs),
        "kept_error": statistics.mean(errs),
        "coverage_sd": statistics.pstdev(covs),
        "kept_error_sd": statistics.pstdev(errs),
    }


def held_out(
    answers: Sequence[Answer], unseen: Sequence[Answer], features: Sequence[str]
) -> dict[str, float]:
    """One feature set fitted on every design answer and scored on the held-out ones: AUROC,
    error among the top 20 % and 30 % by ``p_correct``, and what the max-local-error
    threshold (read off the design answers' cross-validated curve) keeps of them."""
    scored = [a for a in answers if a.signals is not None]
    cal = fit_calibration(
        [a.features for a in scored], [int(a.right) for a in scored], features, model="held-out"
    )
    test = [a for a in unseen if a.signals is not None]
    p = [cal.p_correct(a.signals) for a in test if a.signals is not None]
    y = [int(a.right) for a in test]
    top = risk_coverage(p, y, (0.2, 0.3))
    found = cal.threshold_for(TARGET)
    keep = [pi >= found[0] for pi in p] if found else [False] * len(p)
    return {
        "auroc": auroc(p, y) or 0.0,
        "top20": top[0].error,
        "top30": top[1].error,
        "kept": sum(keep),
        "kept_wrong": sum(k and not r for k, r in zip(keep, y, strict=True)),
    }


def _held_out_note(
    answers: Sequence[Answer], unseen: Sequence[Answer]
) -> tuple[str, dict[str, float]]:
    """The held-out line of the notes, and each round's AUROC there."""
    right = sum(a.right for a in unseen)
    shown = []
    scores = {}
    for name, feats in (("round two", ROUND_TWO), ("round three", ROUND_THREE)):
        r = held_out(answers, unseen, feats)
        scores[name] = r["auroc"]
        shown.append(
            f"{name} AUROC {r['auroc']:.3f}, error among the top 20 % {r['top20']:.0%} / "
            f"30 % {r['top30']:.0%}, max_local_error {TARGET} keeps {r['kept']:.0f} "
            f"({r['kept_wrong']:.0f} wrong)"
        )
    note = (
        f"Held out: {len(unseen)} questions never seen while the signals were designed "
        f"({sum(a.answerable for a in unseen)} answerable, {right} answered right; "
        "collect_calibration.py --holdout), scored by each set fitted on all "
        f"{len(answers)} design answers: " + "; ".join(shown) + "."
    )
    return note, scores


def _paired(a: Sequence[Answer], b: Sequence[Answer]) -> tuple[list[Answer], list[Answer]]:
    """The answers of ``a`` and ``b`` to the same questions, in the same order."""
    other = {x.qid: x for x in b}
    both = [x for x in a if x.qid in other]
    return both, [other[x.qid] for x in both]


def _chart(answers: Sequence[Answer], p: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [a for a in answers if a.signals is not None]
    y = [int(a.right) for a in scored]
    conf = [a.signals.self_confidence for a in scored if a.signals is not None]
    levels = [i / 50 for i in range(1, 51)]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for scores, name in ((p, "p_correct (cross-validated)"), (conf, "self-reported confidence")):
        rc = risk_coverage(scores, y, levels)
        ax.plot([r.coverage for r in rc], [r.error for r in rc], label=name)
    ax.axhline(TARGET, color="grey", linestyle=":", linewidth=1, label=f"max_local_error {TARGET}")
    ax.set_xlabel("share of answers kept local (most confident first)")
    ax.set_ylabel("error among kept answers")
    ax.set_title(f"Risk–coverage: bundled 0.5B specialists, {len(answers)} labelled answers")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bare_numbers(answers: Sequence[Answer]) -> int:
    """Right answers that state a fact's number without its unit (``30`` for ``30 days``):
    right only because :func:`~tandem.graphs.evaluate.fact_in` counts a number stated alone."""
    return sum(
        a.right and any(not set(_words(f)) <= set(_words(a.answer)) for f in a.facts)
        for a in answers
    )


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W\d_]+|%", text.lower())


def _ceiling(answers: Sequence[Answer], target: float) -> tuple[float, float]:
    """What a perfect ranker could keep under ``target``: every right answer and as many
    answerable wrong ones as the error allows; and the share of answerable questions that
    must be right for 70 % of them to be kept."""
    answerable = [a for a in answers if a.answerable]
    right = sum(a.right for a in answerable)
    wrong_allowed = int(right * target / (1 - target))
    return (right + wrong_allowed) / len(answerable), 0.70 * (1 - target)


def _recall(answers: Sequence[Answer]) -> tuple[float, float]:
    facts = sum(len(a.facts) for a in answers)
    right = [a.right for a in answers if a.answerable]
    return sum(a.found for a in answers) / facts, sum(right) / len(right)


def run() -> BenchResult:
    answers = load_answers(ANSWERS)
    cal = shipped()
    scored = [a for a in answers if a.signals is not None]
    y = [int(a.right) for a in scored]
    full = evaluate(answers, cal.bundled.features)
    generic = evaluate(answers, GENERIC_FEATURES)
    previous = evaluate(answers, FIRST_ROUND, l2=1.0)
    without = {
        f: evaluate(answers, [g for g in cal.bundled.features if g != f])
        for f in ("ask_support", "answer_locus")
    }
    round_two = evaluate(answers, ROUND_TWO)
    nested, chosen = nested_choice([a.features for a in scored], y, SEEDS)
    ceiling, needed = _ceiling(answers, TARGET)
    conf = [a.signals.self_confidence for a in scored if a.signals is not None]
    self_auc, self_ece = auroc(conf, y) or 0.0, ece(conf, y) or 0.0
    p = cross_validated(matrix(scored, cal.bundled.features), y)
    chart = HERE / "charts" / "calibration_risk_coverage.png"
    _chart(answers, p, chart)
    ours, theirs = risk_coverage(p, y), risk_coverage(conf, y)
    rows = [
        [
            f"{a.coverage:.0%}",
            f"{a.threshold:.2f}",
            f"{a.error:.1%}",
            f"{b.threshold:.2f}",
            f"{b.error:.1%}",
        ]
        for a, b in zip(ours, theirs, strict=True)
    ]
    cost = [a.signal_seconds / a.call_seconds for a in answers if a.call_seconds > 0]
    recall, acc = _recall(answers)
    notes = [
        f"{len(answers)} questions ({sum(a.answerable for a in answers)} answerable); "
        f"{sum(y)} local answers right ({acc:.1%} of the answerable), fact recall {recall:.1%}; "
        f"{len(answers) - len(scored)} worker failures (always escalated).",
        f"p_correct (shipped features {', '.join(cal.bundled.features)}): AUROC "
        f"{full['auroc']:.3f} ± {full['auroc_sd']:.3f} over seeds (per fold ± "
        f"{full['fold_sd']:.3f}), ECE {full['ece']:.3f}; self-reported confidence: AUROC "
        f"{self_auc:.3f}, ECE {self_ece:.3f}.",
        f"Feature set and ridge chosen inside each outer fold (nested CV, "
        f"{len(SEEDS)} seeds × 10 folds): AUROC {statistics.mean(nested):.3f} ± "
        f"{statistics.pstdev(nested):.3f} (what choosing a set on these answers is worth on new "
        "ones); chosen: "
        + "; ".join(f"{n}, ridge {l2:g}: {c}" for (n, l2), c in chosen.most_common())
        + ".",
        f"The first round's 16 signals (ridge 1) on the same labels: AUROC "
        f"{previous['auroc']:.3f} ± {previous['auroc_sd']:.3f}; the second round's set (shipped "
        f"before answer_locus): AUROC {round_two['auroc']:.3f} ± {round_two['auroc_sd']:.3f}, "
        f"keeps {round_two['coverage']:.1%} at {round_two['kept_error']:.1%} error. Ablation, "
        "shipped set without "
        + ", ".join(
            f"{f}: AUROC {r['auroc']:.3f} ({r['auroc'] - full['auroc']:+.3f}), keeps "
            f"{r['coverage']:.1%} at {r['kept_error']:.1%} error"
            for f, r in without.items()
        )
        + ".",
        f"Labels: {_bare_numbers(answers)} answers are right only because fact matching counts "
        'a number stated alone ("30" for "30 days"; they were wrong before that rule).',
        f"Ceiling: with {acc:.1%} of the answerable questions answered right, a perfect ranker "
        f"under max_local_error {TARGET} keeps at most {ceiling:.1%} of them local; keeping "
        f"70 % needs at least {needed:.1%} of them right — the coverage target is out of this "
        "0.5B's reach whatever the signals.",
        f"Generic fit (no log-probabilities or retrieval scores; {len(GENERIC_FEATURES)} "
        f"signals): AUROC {generic['auroc']:.3f}, ECE {generic['ece']:.3f} — reported, not "
        "shipped (the hand-set fallback stays; see fit_calibration.py).",
        f"max_local_error {TARGET}: {full['coverage']:.1%} ± {full['coverage_sd']:.1%} of "
        f"answerable questions kept local, {full['kept_error']:.1%} ± "
        f"{full['kept_error_sd']:.1%} of kept answers wrong (nested CV, mean ± spread over "
        f"{len(SEEDS)} seeds).",
        f"Signal cost: median {statistics.median(cost):.2%} of the worker call's time "
        f"(max {max(cost):.2%}).",
    ]
    held: float | None = None
    if HOLDOUT.exists():
        note, rounds = _held_out_note(answers, load_answers(HOLDOUT))
        notes.append(note)
        held = rounds["round three" if cal.bundled.features == ROUND_THREE else "round two"]
    if BEFORE.exists():
        before = load_answers(BEFORE)
        ids = {a.qid for a in before}
        same = [a for a in answers if a.qid in ids]
        b_recall, b_acc = _recall(before)
        a_recall, a_acc = _recall(same)
        b_tokens = statistics.mean(a.tokens_out for a in before)
        a_tokens = statistics.mean(a.tokens_out for a in same)
        notes.append(
            f"Concise specialists on the same {len(same)} questions: fact recall "
            f"{b_recall:.1%} → {a_recall:.1%}, answerable right {b_acc:.1%} → {a_acc:.1%}, "
            f"tokens out per answer {b_tokens:.0f} → {a_tokens:.0f}, capped replies "
            f"{sum(a.truncated for a in before)} → {sum(a.truncated for a in same)}."
        )
    if EVIDENCE.exists():
        hinted = load_answers(EVIDENCE)
        mine = {a.qid for a in hinted}
        same = [a for a in answers if a.qid in mine]
        h = evaluate(hinted, cal.bundled.features)
        gained = sum(a.right and not b.right for a, b in zip(*_paired(hinted, same), strict=True))
        lost = sum(b.right and not a.right for a, b in zip(*_paired(hinted, same), strict=True))
        notes.append(
            f"With the evidence hint (WorkerSpec.evidence = 2, opt-in) on the same "
            f"{len(same)} questions: right {sum(a.right for a in same)} → "
            f"{sum(a.right for a in hinted)} ({gained} gained, {lost} lost); prompt tokens "
            f"median {statistics.median(a.tokens_in for a in same):.0f} → "
            f"{statistics.median(a.tokens_in for a in hinted):.0f}; p_correct re-fitted on them "
            f"(same features): AUROC {full['auroc']:.3f} → {h['auroc']:.3f}, "
            f"max_local_error {TARGET} keeps {full['coverage']:.1%} → {h['coverage']:.1%} at "
            f"{full['kept_error']:.1%} → {h['kept_error']:.1%} error — more right answers, "
            "told apart less well, so the hint stays off by default."
        )
    figures = [
        Figure("AUROC p_correct", full["auroc"], "≥ 0.85", full["auroc"] >= 0.85),
        Figure(
            "AUROC p_correct, set chosen in-fold",
            statistics.mean(nested),
            "≥ 0.85",
            statistics.mean(nested) >= 0.85,
        ),
        *(
            [Figure("AUROC p_correct, held-out answers", held, "≥ 0.85", held >= 0.85)]
            if held is not None
            else []
        ),
        Figure("AUROC self-reported", self_auc, "(compare)", None),
        Figure("ECE p_correct", full["ece"], "(lower is better)", None),
        Figure(
            "answerable kept local", full["coverage"], "≥ 0.70", full["coverage"] >= 0.70, "{:.1%}"
        ),
        Figure("answerable kept, perfect ranker", ceiling, "(ceiling)", None, "{:.1%}"),
        Figure(
            "error among kept", full["kept_error"], "≤ 0.08", full["kept_error"] <= 0.08, "{:.1%}"
        ),
        Figure(
            "signal cost / call",
            statistics.median(cost),
            "≤ 0.05",
            statistics.median(cost) <= 0.05,
            "{:.2%}",
        ),
    ]
    return BenchResult(
        key="calibration",
        title="12. Calibration: is a local answer right?",
        method=__doc__ or "",
        headers=["kept", "p_correct ≥", "error", "self-conf ≥", "error"],
        rows=rows,
        figures=figures,
        notes=notes,
        charts=[str(chart.relative_to(HERE))],
    )
