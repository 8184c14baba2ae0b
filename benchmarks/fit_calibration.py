"""Fit the shipped ``p_correct`` coefficients (``workers/builtin/calibration.json``).

Reads the answers cached by ``collect_calibration.py`` (the bundled 0.5B specialists,
MiniLM retrieval and the current worker prompt on ``benchmarks/data/calibration.jsonl``),
recomputes their signals with the product's code, labels them by fact matching and fits
two logistic models with :func:`tandem.workers.calibration_fit.fit_calibration`:

* ``bundled`` — :data:`BUNDLED_FEATURES`, for ``embedded:qwen2.5-coder-0.5b`` with
  ``embedded:minilm``, ridge :data:`~tandem.workers.calibration_fit.DEFAULT_L2`;
* ``generic`` — grounding and self-report only (no token log-probabilities or retrieval
  scores, whose scales belong to one model and one embedder), the fallback for any
  other model until ``tandem calibrate`` fits one. Its cross-validated figures are
  printed (and reported in §12), but the fit is written only with ``--ship-generic``: its
  intercept is this 0.5B's base rate (a third of its answers right), and under the generic
  rule (``p_correct`` ≥ ``min_confidence`` *and* every grounding check) it would send
  nearly every answer of a stronger, uncalibrated model to the supervisor. The hand-set
  fallback stays until a fit over several models exists.

Re-run ``collect_calibration.py`` and this script whenever the bundled worker model, the
embedding model, the chunking or the worker prompt changes: the coefficients describe that
exact combination (the file records the embedder and a fingerprint of the prompt, and
``tandem doctor`` warns when they no longer match).

Usage::

    .venv/bin/python benchmarks/fit_calibration.py [--answers results/calibration_answers.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _calibration_data import load_answers
from _common import HERE

from tandem.workers.builtin import DEMO_MODEL
from tandem.workers.calibration import prompt_fingerprint
from tandem.workers.calibration_fit import fit_calibration
from tandem.workers.worker import RULES

BUNDLED_FEATURES = [
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
"""The model's certainty, retrieval, and grounding: does the answer come from the passage
sentences that match the question (``ask_support``), does it state the kind of quantity
asked for, does it say "not covered", are its figures and names in any passage. Chosen in
issue 15's second round (benchmarks/RESULTS.md §12): among eight candidate sets (all 16
signals with and without the two new ones, log-probabilities and retrieval alone, this set;
ridge 1 or 5), nested cross-validation chose this set in all 50 outer folds (5 seeds × 10),
with ridge 5 in 45; the other signals (self-report, citations, length, overlap with the
question) added nothing but variance on 168 answers."""
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


if __name__ == "__main__":
    main()
