"""(4) Router: the old router, the learned router and a keyword baseline, side by side.

All three route the same 245 hand-labelled questions (`benchmarks/data/routing_eval.jsonl`:
single-domain, cross-domain and out-of-scope) in one process:

* **old** — the centroid router (cosine to each worker's profile centroid, fixed
  thresholds) on the bundled 0.5B chat model's mean-pooled embeddings, the earlier default.
  It does not train on this set (its thresholds were chosen on `routing.jsonl`).
* **learned** — the default router on the bundled MiniLM embeddings, scored by stratified
  k-fold cross-validation (:func:`tandem.agents.router.evaluate_router`): each fold is
  routed by a router fitted — and threshold-tuned — without any of that fold's questions,
  so no question is scored by a router that saw it. The cross-validation is repeated with
  :data:`SEEDS` fold assignments and the figures are their mean (one assignment alone
  moves exact-route accuracy by a few points).
* **keyword** — content-word overlap with each worker's description and examples.

The learned router's optional **second stage** (``[router] second_stage``) is measured on the
same folds: each fold chooses its grey band on its training folds' out-of-fold scores (at
most :data:`SECOND_SHARE` of them go to the second stage), then the bundled local models
(:data:`SECOND_MODELS`) choose the specialists of that fold's grey questions.

A decision is correct when its set of specialists equals the label: one worker (direct),
several (plan) or none (the supervisor answers alone). Latency is one routing decision
including the query's embedding.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from _common import DATA, BenchResult, Figure, median, pct, scratch

from tandem.agents.router import (
    LearnedRouter,
    Router,
    RouterEvalReport,
    RouterSettings,
    SecondStage,
    evaluate_router,
    load_routes,
)
from tandem.agents.router.evaluate import ClassMetrics, EvalRow, label_of, metrics
from tandem.graphs.runtime import builtin_routes
from tandem.workers import WorkerSpec
from tandem.workers._fakes.ollama_server import words
from tandem.workers.backends import Backend, BackendSettings, make_backend
from tandem.workers.builtin import specs as builtin_specs

FOLDS = 5
SEEDS = int(os.environ.get("BENCH_ROUTER_SEEDS", "5"))
"""Fold assignments (seeds) of the repeated cross-validation: one seed's five folds swing
the exact-route figure by a few points, so the headline is the mean over these."""
RUNS = 3
PROBE = "Can my landlord keep my deposit?"
"""Start-ups of the learned router and passes of decisions timed (medians reported)."""
OLD_EMBED = "embedded:qwen2.5-coder-0.5b"
NEW_EMBED = "embedded:minilm"
LABELS = ["tenancy", "finance", "health", "cross", "none"]
SECOND_MODELS = [
    m.strip()
    for m in os.environ.get(
        "BENCH_ROUTER_SECOND", "embedded:qwen2.5-coder-0.5b,embedded:qwen2.5-coder-1.5b"
    ).split(",")
    if m.strip()
]
"""Local models tried as the second stage (``BENCH_ROUTER_SECOND``; empty: none)."""
SECOND_SHARE = 0.09
"""Share of the training folds' questions the grey band may send to the second stage (so
that the held-out share stays within the issue's 10 %)."""
SECOND_TIMEOUT = 60.0


def keyword_router(specs: Sequence[WorkerSpec]) -> Callable[[str], list[str]]:
    vocab = {s.name: set(words(" ".join([s.description, *s.examples]))) for s in specs}

    def decide(query: str) -> list[str]:
        q = set(words(query))
        scores = {n: len(q & v) for n, v in vocab.items()}
        top = max(scores.values())
        if top < 2:
            return []
        return sorted((n for n, s in scores.items() if s >= max(2, top - 1)), key=scores.get)

    return decide


def _backend(ref: str) -> Backend:
    env = os.environ.get("TANDEM_MODEL_CACHE")
    return make_backend(ref, BackendSettings(embedded={"cache_dir": Path(env) if env else None}))


def _confusion(rows: Sequence[EvalRow]) -> list[list[int]]:
    pos = {x: i for i, x in enumerate(LABELS)}
    out = [[0] * len(LABELS) for _ in LABELS]
    for r in rows:
        out[pos[label_of(r.expected)]][pos[label_of(r.chosen)]] += 1
    return out


@dataclass
class Timing:
    """The default learned router's start-up and decision latency, over several runs."""

    cold: list[float]
    """Zero-config first starts until the first decision: a fresh cache, the shipped fit
    loaded (its key matches), then one decision (the first run also loads MiniLM)."""
    fit: list[float]
    """First starts that must fit (training data other than the shipped fit's): the same
    data fitted from the bundled vectors, thresholds as given, then one decision."""
    warm: list[float]
    """Later starts until the first decision: the fitted model from the on-disk cache."""
    p50: list[float]
    p95: list[float]
    """Per pass over the questions: decision latency (ms), embedding included."""
    rows: int


async def _learned_timing(specs: list[WorkerSpec], questions: list[str]) -> Timing:
    """The default router as `tandem` starts it (zero config: the built-in workers' labelled
    routes, a cache in the data dir), :data:`RUNS` times; then :data:`RUNS` passes of
    decisions over ``questions`` by the last one (what a user's router decides with)."""
    routes = builtin_routes(specs)
    t = Timing([], [], [], [], [], 0)
    router: Router | None = None
    for _ in range(RUNS):
        cache = scratch("tandem-bench-router-")
        t0 = time.perf_counter()
        first = Router(specs, _backend(NEW_EMBED), RouterSettings(), routes=routes, cache_dir=cache)
        await first.profiles()
        await first.decide(PROBE)
        t.cold.append(time.perf_counter() - t0)
        assert first.learned is not None and first.learned.fit_info.shipped
        t.rows = first.learned.fit_info.rows
        t0 = time.perf_counter()
        fitted = LearnedRouter(
            specs,
            _backend(NEW_EMBED),
            RouterSettings(),
            routes=routes,
            cache_dir=cache,
            use_shipped=False,
        )
        await fitted.fit()
        await fitted.decide(PROBE)
        t.fit.append(time.perf_counter() - t0)
        assert not fitted.fit_info.cached
        t0 = time.perf_counter()
        router = Router(
            specs, _backend(NEW_EMBED), RouterSettings(), routes=routes, cache_dir=cache
        )
        await router.profiles()
        await router.decide(PROBE)
        t.warm.append(time.perf_counter() - t0)
        assert router.learned is not None and router.learned.fit_info.cached
        assert not router.learned.fit_info.shipped  # the on-disk cache, checked first
    assert router is not None
    for _ in range(RUNS):
        lat = []
        for q in questions:
            t0 = time.perf_counter()
            await router.decide(q)
            lat.append((time.perf_counter() - t0) * 1000)
        t.p50.append(median(lat))
        t.p95.append(pct(lat, 95))
    return t


def _acc_row(name: str, m: ClassMetrics) -> list[str]:
    def share(x: float) -> str:
        return f"{x:.1%}"

    return [
        name,
        share(m.accuracy),
        share(m.route_accuracy),
        share(m.single_recall),
        share(m.cross_recall),
        share(m.none_recall),
        share(m.none_precision),
    ]


def _remap(report: RouterEvalReport) -> list[list[int]]:
    """The report's confusion matrix in :data:`LABELS` order."""
    pos = {x: i for i, x in enumerate(report.labels)}
    return [
        [report.confusion[pos[a]][pos[b]] if a in pos and b in pos else 0 for b in LABELS]
        for a in LABELS
    ]


def _matrix(title: str, confusion: list[list[int]]) -> tuple[str, list[str], list[list[str]]]:
    return (
        f"Confusion, {title} (rows: label, columns: routed to)",
        ["label", *LABELS],
        [
            [lab, *(str(c) if c else "·" for c in row)]
            for lab, row in zip(LABELS, confusion, strict=True)
        ],
    )


def _second_table(
    learned: RouterEvalReport, seconds: Sequence[tuple[str, RouterEvalReport]]
) -> tuple[list[list[str]], list[str]]:
    """Rows of the second-stage table (the fast router alone first, from the same runs) and
    notes on what the second stage changed."""
    rows = [
        [
            f"learned alone ({FOLDS}-fold CV, seed 0)",
            f"{learned.overall.accuracy:.1%}",
            f"{learned.overall.cross_recall:.1%}",
            f"{learned.overall.none_precision:.1%}",
            "0",
            "–",
            "–",
            "–",
        ]
    ]
    notes = []
    for ref, rep in seconds:
        asked = [r for r in rep.rows if r.fast is not None]
        fast_rows = [
            r.model_copy(update={"chosen": r.fast, "correct": set(r.fast) == set(r.expected)})
            if r.fast is not None
            else r
            for r in rep.rows
        ]
        fast = metrics(fast_rows)
        ms = [r.second_ms for r in asked if r.second_ms is not None]
        before = sum(set(r.fast or []) == set(r.expected) for r in asked)
        after = sum(r.correct for r in asked)
        failed = [r for r in asked if r.stage != "second"]
        m = rep.overall
        rows.append(
            [
                f"learned + {ref}",
                f"{m.accuracy:.1%} (alone {fast.accuracy:.1%})",
                f"{m.cross_recall:.1%} ({fast.cross_recall:.1%})",
                f"{m.none_precision:.1%} ({fast.none_precision:.1%})",
                f"{len(asked)}/{len(rep.rows)} = {len(asked) / len(rep.rows):.1%}",
                f"{median(ms):.0f} ms" if ms else "–",
                f"{pct(ms, 95):.0f} ms" if ms else "–",
                f"{before}/{len(asked)} → {after}/{len(asked)}",
            ]
        )
        changed = "; ".join(
            f"{','.join(r.expected) or 'none'}: {','.join(r.fast or []) or 'none'} → "
            f"{','.join(r.chosen) or 'none'}{' ✓' if r.correct else ''}"
            for r in asked
            if set(r.fast or []) != set(r.chosen)
        )
        notes.append(
            f"Second stage {ref}: asked for {len(asked)} of {len(rep.rows)} held-out questions "
            f"(grey band chosen per fold on its training folds, ≤ {SECOND_SHARE:.0%} of them), "
            f"exact {fast.accuracy:.1%} → {m.accuracy:.1%} "
            f"({m.accuracy - fast.accuracy:+.1%}); on the grey questions the fast router was "
            f"right for {before}, the second stage for {after}; replies not used (malformed or "
            f"timed out): {len(failed)}; decisions it changed (label: fast → second): "
            f"{changed or 'none'}."
        )
    if not seconds:
        notes.append("Second stage: not measured (BENCH_ROUTER_SECOND empty).")
    return rows, notes


def run() -> BenchResult:
    data = load_routes(DATA / "routing_eval.jsonl")
    specs = builtin_specs()
    counts = {lab: sum(label_of(r.workers) == lab for r in data) for lab in LABELS}

    async def learned_cv(
        cache: Path, repeat: int = 1, second: SecondStage | None = None
    ) -> RouterEvalReport:
        """The default learned router, cross-validated (over ``repeat`` fold assignments)."""
        return await evaluate_router(
            specs,
            _backend(NEW_EMBED),
            RouterSettings(),
            data,
            folds=FOLDS,
            routes=builtin_routes(specs),
            cache_dir=cache,
            second=second,
            second_share=SECOND_SHARE if second is not None else None,
            repeat=repeat,
        )

    async def second_stage() -> list[tuple[str, RouterEvalReport]]:
        out = []
        for ref in SECOND_MODELS:
            stage = SecondStage(_backend(ref), specs, SECOND_TIMEOUT)
            await stage.ask(PROBE)  # load the model: its latency is not a decision's
            out.append((ref, await learned_cv(scratch("tandem-bench-router-cv2-"), second=stage)))
        return out

    async def measure() -> tuple[RouterEvalReport, RouterEvalReport, Timing]:
        timing = await _learned_timing(specs, [r.question for r in data])  # a cold MiniLM first
        cache = scratch("tandem-bench-router-cv-")
        learned = await learned_cv(cache, repeat=SEEDS)
        old = await evaluate_router(
            specs,
            _backend(OLD_EMBED),
            RouterSettings(kind="centroid", embed_model=OLD_EMBED),
            data,
        )
        return learned, old, timing

    # The first fold assignment (seed 0) is the second stage's: its rows are in the report.
    learned, old, timing = asyncio.run(measure())
    mean = learned.mean
    seconds = asyncio.run(second_stage())
    second_rows, second_notes = _second_table(learned, seconds)
    cold, fit, warm = median(timing.cold), median(timing.fit), median(timing.warm)
    p50, p95 = median(timing.p50), median(timing.p95)

    keyword = keyword_router(specs)
    kw_rows, kw_lat = [], []
    for r in data:
        t = time.perf_counter()
        chosen = keyword(r.question)
        kw_lat.append(time.perf_counter() - t)
        kw_rows.append(
            EvalRow(
                question=r.question,
                expected=list(r.workers),
                chosen=chosen,
                kind="supervisor" if not chosen else "direct" if len(chosen) == 1 else "plan",
                correct=set(chosen) == set(r.workers),
            )
        )
    kw = metrics(kw_rows)

    names = {
        "old": "old: centroid, 0.5B chat embeddings",
        "new": f"learned, MiniLM ({FOLDS}-fold CV × {SEEDS} seeds, mean)",
        "kw": "keyword overlap",
    }
    old_start = old.fit_seconds[0] if old.fit_seconds else float("nan")
    table = [
        _acc_row(names["old"], old.overall),
        _acc_row(names["new"], mean),
        _acc_row(names["kw"], kw),
    ]
    latency = [
        [
            names["old"],
            f"{old.latency_ms_p50:.1f} ms",
            f"{old.latency_ms_p95:.1f} ms",
            "none",
            f"{old_start:.1f} s (model load + profiles)",
        ],
        [
            "learned, MiniLM (the default router)",
            f"{p50:.1f} ms",
            f"{p95:.1f} ms",
            "none",
            f"{cold:.2f} s first start (shipped fit); {fit:.2f} s when it must fit; "
            f"{warm * 1000:.0f} ms cached",
        ],
        [
            names["kw"],
            f"{median(kw_lat) * 1e6:.0f} µs",
            f"{pct(kw_lat, 95) * 1e6:.0f} µs",
            "none",
            "0",
        ],
    ]
    m = mean
    fold_acc = [f.accuracy for f in learned.per_fold]
    fits = learned.fit_seconds
    always = set(learned.always_misrouted)
    misrouted = "; ".join(
        f"{','.join(r.expected) or 'none'} → {','.join(r.chosen) or 'none'}: “{r.question}”"
        + ("" if r.question in always else " (not in every seed)")
        for r in learned.misrouted
    )
    per_seed = "; ".join(
        f"seed {i}: exact {r.accuracy:.1%}, cross {r.cross_recall:.1%}, "
        f"none prec {r.none_precision:.1%}"
        for i, r in enumerate(learned.repeats)
    )
    return BenchResult(
        key="router",
        title="4. Router: old vs learned vs keyword (accuracy, latency, start-up)",
        method=f"{len(data)} hand-labelled questions in `benchmarks/data/routing_eval.jsonl` ("
        + ", ".join(f"{counts[lab]} {lab}" for lab in LABELS)
        + '), one process, three routers. **Old**: `[router] kind = "centroid"` with its '
        f"default thresholds on `{OLD_EMBED}` embeddings (the previous default; it does not "
        "train on this set). **Learned**: the default router on the bundled "
        f"`{NEW_EMBED}`, scored by stratified {FOLDS}-fold cross-validation repeated with "
        f"{SEEDS} fold assignments (`evaluate_router(..., folds={FOLDS}, repeat={SEEDS})`, "
        f"what `tandem router eval --cv {FOLDS} --repeat {SEEDS}` runs), figures the mean over "
        "the assignments: every "
        "fold is routed by a router fitted on the workers' examples, the bundled off-topic "
        "questions, the routes written for training (`workers/builtin/routing_train.jsonl`, "
        "single- and cross-domain; none within cosine 0.78 of an evaluated question) and the "
        "other four folds — its thresholds tuned by 4-fold CV inside those "
        "— so no question is scored by a router that saw it. **Keyword**: content-word "
        "overlap with each worker's description and examples. Correct (exact) = the chosen "
        "set of specialists equals the label; route = direct/plan/supervisor right; none "
        "prec = share of the questions sent to no specialist that were out of scope. "
        "Latency = one `decide` call including the query's embedding (the learned router "
        "embeds the question and its clauses in one batch), single-threaded embeddings.",
        headers=["router", "exact", "route", "single", "cross", "none", "none prec"],
        rows=table,
        figures=[
            Figure(
                f"learned router: exact route ({FOLDS}-fold CV, mean of {SEEDS} seeds)",
                m.accuracy,
                "≥ 0.95",
                m.accuracy >= 0.95,
            ),
            Figure(
                "learned router: cross-domain recall",
                m.cross_recall,
                "≥ 0.90",
                m.cross_recall >= 0.90,
            ),
            Figure(
                "learned router: out-of-scope precision",
                m.none_precision,
                "≥ 0.90",
                m.none_precision >= 0.90,
            ),
            Figure(
                "learned router: decision p50 (ms)",
                p50,
                "≤ 15",
                p50 <= 15,
                "{:.1f}",
            ),
            Figure(
                "learned router: decision p95 (ms)",
                p95,
                "≤ 40",
                p95 <= 40,
                "{:.1f}",
            ),
            Figure("learned router: first start (s)", cold, "≤ 2", cold <= 2, "{:.2f}"),
        ],
        extra_tables=[
            (
                "Latency per decision and start-up",
                ["router", "p50", "p95", "2nd stage", "start-up"],
                latency,
            ),
            (
                "Second stage (local model on the grey-zone questions, same 5 folds)",
                [
                    "router",
                    "exact",
                    "cross",
                    "none prec",
                    "2nd-stage share",
                    "2nd p50",
                    "2nd p95",
                    "grey: fast right → 2nd",
                ],
                second_rows,
            ),
            _matrix("old router", _remap(old)),
            _matrix(f"learned router ({FOLDS}-fold CV, seed 0)", _remap(learned)),
            _matrix("keyword overlap", _confusion(kw_rows)),
        ],
        notes=[
            f"Learned router per seed ({FOLDS} folds each): {per_seed}.",
            "Learned router, seed 0, per fold, exact route: "
            + ", ".join(f"{a:.1%}" for a in fold_acc)
            + f" (mean {sum(fold_acc) / len(fold_acc):.1%}); cross-domain questions "
            f"planned across any specialists: {learned.overall.cross_detected:.1%} "
            f"(mean of the seeds {m.cross_detected:.1%}); probabilities: Brier "
            f"{learned.brier}, ECE {learned.ece}; fit per fold (warm embedding cache, 5 fits "
            f"with threshold tuning, all seeds) {min(fits):.1f}–{max(fits):.1f} s.",
            f"Learned router latency and start-up: medians of {RUNS} runs. Decisions: the "
            f"default router (fitted on all its training data) over the {len(data)} questions, "
            f"{RUNS} passes; p50 per pass "
            + ", ".join(f"{x:.1f}" for x in timing.p50)
            + " ms, p95 per pass "
            + ", ".join(f"{x:.1f}" for x in timing.p95)
            + f" ms (the cross-validated folds' own decisions: p50 {learned.latency_ms_p50:.1f}"
            f" ms, p95 {learned.latency_ms_p95:.1f} ms). Its zero-config first start "
            f"({timing.rows} training texts: profiles, the bundled labelled routes and "
            "off-topic questions), until its first decision — a fresh cache, so the fit "
            "shipped with tandem is loaded (its key, a hash of the training data and the "
            "settings, matches), then one decision: "
            + ", ".join(f"{x:.2f}" for x in timing.cold)
            + " s (the first run also loads MiniLM into the process); a first start that "
            "must fit (any other training data: here the same data with the shipped fit "
            "bypassed, from the bundled vectors, thresholds as given), then one decision: "
            + ", ".join(f"{x:.2f}" for x in timing.fit)
            + " s; later starts, with the fitted model from the on-disk cache: "
            + ", ".join(f"{x * 1000:.0f}" for x in timing.warm)
            + " ms. The old router (one pass) starts by loading the 0.5B model and embedding "
            "the profiles.",
            *second_notes,
            f"Old router: {old.overall.accuracy:.1%} exact; keyword: {kw.accuracy:.1%}; "
            f"learned (mean) − old = {m.accuracy - old.overall.accuracy:+.1%}.",
            f"Learned router, seed 0, misrouted ({len(learned.misrouted)}; "
            f"{len(always)} in every seed): {misrouted}",
        ],
    )
