"""Fit the shipped ``p_correct`` coefficients (``workers/builtin/calibration.json``).

Reads the answers cached by ``collect_calibration.py`` (the bundled 0.5B specialists,
MiniLM retrieval and the current worker prompt on ``benchmarks/data/calibration.jsonl``),
recomputes their signals with the product's code, labels them by fact matching and fits
two logistic models with :func:`tandem.workers.calibration_fit.fit_calibration`:

* ``bundled`` — :data:`BUNDLED_FEATURES`, for ``embedded:qwen2.5-coder-0.5b`` with
  ``embedded:minilm``, ridge :data:`~tandem.workers.calibration_fit.DEFAULT_L2` — the set
  and ridge chosen among :data:`CANDIDATES` (:func:`nested_choice` prints its choices and
  the AUROC of the choice made inside each outer fold: when the labels, the signals or
  the answers change, set :data:`BUNDLED_FEATURES` to its choice if it beats the shipped
  set by more than the noise);
* ``generic`` — grounding and self-report only (no token log-probabilities or retrieval
  scores, whose scales belong to one model and one embedder), the fallback for any
  other model until ``tandem calibrate`` fits one. Its cross-validated figures are
  printed (and reported in §12), but the fit is written only with ``--ship-generic``: its
  intercept is this 0.5B's base rate (two in five of its answers right), and under the generic
  rule (``p_correct`` ≥ ``min_confidence`` *and* every grounding check) it would send
  nearly every answer of a stronger, uncalibrated model to the supervisor. The hand-set
  fallback stays until a fit over several models exists.

Re-run ``collect_calibration.py`` and this script whenever the bundled worker model, the
embedding model, the chunking, the passage ranking (``keyword_weight``) or the worker prompt
changes: the coefficients describe that
exact combination (the file records the embedder and a fingerprint of the prompt, and
``tandem doctor`` warns when they no longer match).

Usage::

    .venv/bin/python benchmarks/fit_calibration.py [--answers results/calibration_answers.jsonl]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _calibration_data import load_answers
from _common import HERE

from tandem.workers.builtin import DEMO_MODEL
from tandem.workers.calibration import prompt_fingerprint
from tandem.workers.calibration_fit import (
    auroc,
    cross_validated,
    fit,
    fit_calibration,
    folds,
    predict,
)
from tandem.workers.worker import RULES

ROUND_TWO = [
    "logprob_mean",
    "logprob_min",
    "logprob_p10",
    "retrieval_best",
    "retrieval_margin",
    "ask_support",
    "kind_missing",
    "not_covered",
    "unsupported_anywhere",
]
"""The second round's set: the model's certainty, retrieval, and grounding — does the answer
come from the passage sentences that match the question (``ask_support``), does it state
the kind of quantity asked for, does it say "not covered", are its figures and names in
any passage."""
ROUND_THREE = [*(f for f in ROUND_TWO if f != "kind_missing"), "answer_locus"]
"""The third round's set (issue 15, designed on the 168 cached answers, checked on the 34
held-out ones): the second round's, with the question's similarity to the passage sentence
that holds the answer (``answer_locus``, graded where ``ask_support`` is nearly yes/no) and
without ``kind_missing`` (weight −0.003 in the second round's fit)."""
FIRST_ROUND = [
    "logprob_mean",
    "logprob_min",
    "logprob_p10",
    "retrieval_best",
    "retrieval_margin",
    "span_support",
    "unsupported",
    "unsupported_anywhere",
    "has_spans",
    "not_covered",
    "no_citation",
    "question_overlap",
    "log_words",
    "self_confidence",
    "needs_escalation",
    "cut_or_repaired",
]
"""The first round's features (every signal of issue 15's first round)."""
SPREAD = ["top_entropy", "top_margin"]
"""How spread the model's likeliest tokens were over the answer (entropy over the top 5 and
the chosen token's lead over the next; :class:`~tandem.workers.backends.TokenLogprob`
``top``). A negative result on the 168 design answers (2026-12-02): alone AUROC 0.61
(entropy, inverted) and 0.54 (margin) against 0.70 for ``logprob_mean``; added to round
three, CV AUROC 0.847 → 0.846 / 0.845 / 0.844 (entropy / margin / both; paired over 20
seeds −0.001 to −0.003, never better in more than 1 of 20). Kept as candidates, so a re-fit
on other answers chooses them only if they help there."""
CANDIDATES: dict[str, list[str]] = {
    "round two": ROUND_TWO,
    "round two without kind_missing": [f for f in ROUND_TWO if f != "kind_missing"],
    "round three": ROUND_THREE,
    "round three + spread": [*ROUND_THREE, *SPREAD],
    "round two + answer_locus": [*ROUND_TWO, "answer_locus"],
    "first round": FIRST_ROUND,
    "first round + ask_support, kind_missing": [*FIRST_ROUND, "ask_support", "kind_missing"],
}
"""The feature sets :func:`nested_choice` chooses among (each with every ridge in
:data:`RIDGES`). Not the model's self-reported confidence beside the second round's set:
the bundled 0.5B says 0.9 for 166 of the 168 answers, the two others happen to be right,
so a fit gives it a *negative* weight that nested CV rewards (+0.01 AUROC) — two answers'
worth of noise that would raise ``p_correct`` when the model doubts itself."""
RIDGES = (1.0, 5.0)
BUNDLED_FEATURES = ROUND_THREE
"""The shipped set. Nested CV on the 168 design answers (20 seeds) chose it in 188 of 200
outer folds, AUROC 0.828 → 0.846 against the second round's candidates alone (paired over
the same folds +0.018 ± 0.005, better in 20 of 20 seeds); on the 34 held-out answers,
fitted on all 168, AUROC 0.778 → 0.826 (benchmarks/RESULTS.md §12). The rule, fixed before
the held-out answers were scored: ship it if nested CV gains more than the noise and it
does not lose on the held-out answers. Before it, the second round's set stayed when the
choice beat it by +0.005 only (within the noise)."""
GENERIC_FEATURES = [
    "ask_support",
    "kind_missing",
    "span_support",
    "unsupported",
    "unsupported_anywhere",
    "has_spans",
    "not_covered",
    "no_citation",
    "question_overlap",
    "log_words",
    "self_confidence",
    "needs_escalation",
    "cut_or_repaired",
]
EMBED_MODEL = "embedded:minilm"
MIN_GENERIC_AUROC = 0.6
"""With ``--ship-generic``, the generic fit replaces the shipped fallback only when it
predicts better than this."""
TARGET = HERE.parent / "workers" / "builtin" / "calibration.json"


def _matrix(rows: Sequence[dict[str, float | None]], features: Sequence[str]) -> list[list[float]]:
    return [
        [float("nan") if r.get(f) is None else float(r[f] or 0.0) for f in features] for r in rows
    ]


def nested_choice(
    rows: Sequence[dict[str, float | None]], y: Sequence[int], seeds: Sequence[int] = range(5)
) -> tuple[list[float], Counter[tuple[str, float]]]:
    """Choose a feature set and ridge without scoring the choice on the answers it was made
    on: in each of 10 outer folds (per seed) the candidate with the best 5-fold AUROC on the
    other folds is fitted there and predicts the held-out fold. Returns the AUROC of those
    held-out predictions per seed and how often each ``(candidate, ridge)`` was chosen."""
    xs = {name: _matrix(rows, feats) for name, feats in CANDIDATES.items()}
    chosen: Counter[tuple[str, float]] = Counter()
    scores = []
    for seed in seeds:
        fold = folds(y, 10, seed)
        p = [0.0] * len(y)
        for f in range(10):
            train = [i for i in range(len(y)) if fold[i] != f]
            yt = [y[i] for i in train]
            best = max(
                (
                    auroc(cross_validated([x[i] for i in train], yt, k=5, seed=seed + 1, l2=l2), yt)
                    or 0.0,
                    name,
                    l2,
                )
                for name, x in xs.items()
                for l2 in RIDGES
            )
            chosen[(best[1], best[2])] += 1
            model = fit([xs[best[1]][i] for i in train], yt, best[2])
            test = [i for i in range(len(y)) if fold[i] == f]
            for i, pi in zip(test, predict(model, [xs[best[1]][i] for i in test]), strict=True):
                p[i] = pi
        scores.append(auroc(p, y) or 0.0)
    return scores, chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--answers", type=Path, default=HERE / "results" / "calibration_answers.jsonl")
    ap.add_argument("--out", type=Path, default=TARGET)
    ap.add_argument(
        "--ship-generic", action="store_true", help="also replace the hand-set generic fallback"
    )
    args = ap.parse_args()
    answers = [a for a in load_answers(args.answers) if a.signals is not None]
    rows = [a.features for a in answers]
    y = [int(a.right) for a in answers]
    answerable = sum(a.answerable for a in answers)
    source = (
        f"{len(answers)} answers of {DEMO_MODEL} (MiniLM retrieval, current worker prompt) to "
        f"benchmarks/data/calibration.jsonl ({answerable} answerable, "
        f"{len(answers) - answerable} not), cached in {args.answers.name}; "
        "fit: benchmarks/fit_calibration.py"
    )
    common = {"embed_model": EMBED_MODEL, "prompt": prompt_fingerprint(RULES), "source": source}
    bundled = fit_calibration(rows, y, BUNDLED_FEATURES, model=DEMO_MODEL, **common)
    generic = fit_calibration(rows, y, GENERIC_FEATURES, model="*", **common)
    out = {"bundled": bundled.model_dump(), "generic": generic.model_dump()}
    ship = args.ship_generic and (generic.auroc or 0.0) >= MIN_GENERIC_AUROC
    if not ship and args.out.exists():
        # A generic fit no better than chance would gate every uncalibrated model on noise,
        # and any fit here on this set's base rate: the hand-set fallback and the grounding
        # rules stay unless asked for.
        out["generic"] = json.loads(args.out.read_text(encoding="utf-8"))["generic"]
        print(f"generic fit not shipped (CV AUROC {generic.auroc:.3f}; see --ship-generic)")
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    for name, cal in (("bundled", bundled), ("generic", generic)):
        found = cal.threshold_for(0.05)
        print(
            f"{name}: {cal.questions} answers, {cal.right} right; CV AUROC {cal.auroc:.3f}, "
            f"ECE {cal.ece:.3f}; max_local_error 0.05 → "
            + (f"p_correct ≥ {found[0]:.3f}, keeps {found[1]:.1%}" if found else "nothing kept")
        )
    print(f"wrote {args.out}")
    scores, chosen = nested_choice(rows, y)
    print(
        f"nested CV, feature set and ridge chosen inside each outer fold: AUROC "
        f"{statistics.mean(scores):.3f} ± {statistics.pstdev(scores):.3f}; chosen: "
        + "; ".join(f"{n} (ridge {l2:g}) {c}×" for (n, l2), c in chosen.most_common())
    )


if __name__ == "__main__":
    main()
