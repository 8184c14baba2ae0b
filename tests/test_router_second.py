"""The learned router's optional second stage: a grey-zone question is decided by a local
chat model (here the fake Ollama server, over its real HTTP API) with a JSON schema; a
malformed reply or a timeout keeps the fast decision with a note; a remote model is refused
at start-up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from tandem.agents.router import LearnedRouter, RouterSettings, SecondStage, evaluate_router
from tandem.agents.router._second import grey_band, grey_score
from tandem.workers.backends import BackendSettings, OllamaSettings, make_backend
from tandem.workers.builtin import specs as builtin_specs
from tandem.workers.errors import ConfigError
from tandem.workers.testing import FakeOllama
from tests.test_router import HashEmbedder

MODEL = "qwen2.5:0.5b"
QUESTION = "Can my landlord keep my deposit for a stained carpet?"


@pytest.fixture
def ollama() -> Any:
    with FakeOllama(chat_models=(MODEL,)) as server:
        yield server


def _stage(server: FakeOllama, timeout: float = 10.0) -> SecondStage:
    backend = make_backend(
        f"ollama:{MODEL}", BackendSettings(ollama=OllamaSettings(host=server.url))
    )
    return SecondStage(backend, builtin_specs(), timeout)


def _router(second: SecondStage | None, band: float, tmp_path: Path) -> LearnedRouter:
    settings = RouterSettings(second_stage_band=band)
    return LearnedRouter(
        builtin_specs(),
        HashEmbedder(),  # type: ignore[arg-type]
        settings,
        cache_dir=tmp_path,
        second=second,
    )


def test_a_grey_question_is_decided_by_the_local_model(ollama: FakeOllama, tmp_path: Path) -> None:
    fast, _ = asyncio.run(_router(None, 1e6, tmp_path).decide(QUESTION))
    assert fast.workers == ["tenancy"] and fast.stage == "fast"
    ollama.script(MODEL, {"workers": ["finance", "health"]})
    calls: list[Any] = []
    decision, _ = asyncio.run(_router(_stage(ollama), 1e6, tmp_path).decide(QUESTION, calls))

    assert decision.stage == "second"
    assert decision.kind == "plan" and set(decision.workers) == {"finance", "health"}
    assert decision.fast_workers == ["tenancy"]
    assert decision.probabilities == fast.probabilities  # still explained by the fast router
    assert decision.reason.startswith(f"second stage: ollama:{MODEL} chose finance, health")
    assert "one specialist: tenancy" in decision.reason  # what the fast router had
    sent = ollama.chat_requests(MODEL)[-1]
    assert sent["format"]["properties"]["workers"]["items"]["enum"] == [
        "tenancy",
        "finance",
        "health",
        "none",
    ]
    assert sent["options"]["temperature"] == 0
    assert sent["messages"][-1]["content"] == QUESTION
    system = sent["messages"][0]["content"]
    assert "- finance: Personal finance and tax" in system
    assert 'How much deposit can my landlord ask for? -> {"workers": ["tenancy"]}' in system
    assert '-> {"workers": ["none"]}' in system and '["tenancy", "finance"]}' in system
    route = [c for c in calls if c.role == "worker"]
    assert len(route) == 1 and route[0].purpose == "route" and route[0].where == "local"


def test_the_model_may_say_none(ollama: FakeOllama, tmp_path: Path) -> None:
    ollama.script(MODEL, {"workers": ["none"]})
    decision, _ = asyncio.run(_router(_stage(ollama), 1e6, tmp_path).decide(QUESTION))
    assert decision.kind == "supervisor" and decision.workers == []
    assert decision.stage == "second"


def test_a_confident_question_never_reaches_the_model(ollama: FakeOllama, tmp_path: Path) -> None:
    decision, _ = asyncio.run(_router(_stage(ollama), 0.0, tmp_path).decide(QUESTION))
    assert decision.stage == "fast" and decision.second_stage is None
    assert ollama.chat_requests(MODEL) == []


@pytest.mark.parametrize(
    "reply", ["the tenancy one", '{"workers": ["plumbing"]}', '{"workers": ["none", "health"]}']
)
def test_a_malformed_reply_keeps_the_fast_decision(
    ollama: FakeOllama, tmp_path: Path, reply: str
) -> None:
    ollama.script(MODEL, reply)
    decision, _ = asyncio.run(_router(_stage(ollama), 1e6, tmp_path).decide(QUESTION))
    assert decision.stage == "fast" and decision.workers == ["tenancy"]
    assert decision.second_stage is not None and "malformed reply" in decision.second_stage
    assert "malformed reply" in decision.reason and decision.reason.endswith(": kept")


def test_a_slow_model_times_out_and_the_fast_decision_stands(tmp_path: Path) -> None:
    with FakeOllama(chat_models=(MODEL,), latency=3.0) as slow:
        decision, _ = asyncio.run(_router(_stage(slow, 0.3), 1e6, tmp_path).decide(QUESTION))
    assert decision.workers == ["tenancy"] and decision.stage == "fast"
    assert decision.second_stage == f"ollama:{MODEL} timed out after 0.3 s"
    assert decision.second_stage_ms is not None and decision.second_stage_ms < 2500


def test_the_setting_takes_off_or_a_model_reference() -> None:
    assert RouterSettings().second_stage == "off"
    assert RouterSettings(second_stage="embedded:qwen2.5-coder-0.5b").second_stage.startswith("e")
    with pytest.raises(ValidationError, match="not a model reference"):
        RouterSettings(second_stage="gpt-4o-mini")


def test_a_remote_second_stage_is_refused_at_start_up(make_config: Any) -> None:
    from tandem.graphs import Runtime

    remote = {"hosts": [{"url": "http://gpu-box.example.net:11434", "models": ["router-model"]}]}
    router = {"kind": "learned", "second_stage": "ollama:router-model"}
    for policy in ("allow", "redact"):  # fail closed, whatever the privacy policy
        with pytest.raises(ConfigError, match=r"second_stage.*is remote.*gpu-box"):
            Runtime(make_config(ollama=remote, router=router, privacy={"policy": policy}))
    local = Runtime(make_config(router={"kind": "learned", "second_stage": f"ollama:{MODEL}"}))
    assert local.router.learned is not None and local.router.learned.second is not None
    assert local.endpoints["router second stage"].where == "local"


def test_the_grey_band_keeps_to_its_share(tmp_path: Path) -> None:
    router = _router(None, 0.0, tmp_path)
    scored = [asyncio.run(router.score(q))[0] for q in _questions()]
    th = router.model.thresholds  # type: ignore[union-attr]
    band = grey_band(scored, th, 0.25)
    grey = [grey_score(s, th) < band for s in scored]
    assert 0 < sum(grey) <= 0.25 * len(scored)
    assert grey_band(scored, th, 0.0) == 0.0


def _questions() -> list[str]:
    return [
        QUESTION,
        "How much notice must I give my landlord?",
        "When is the tax return deadline?",
        "What is the dose of paracetamol for a child?",
        "Can I deduct my rent from my taxes?",
        "What is the capital of France?",
        "My boiler is broken and I have a fever, what should I do?",
        "How do pensions work?",
    ]


def test_cross_validation_reports_both_decisions(ollama: FakeOllama, tmp_path: Path) -> None:
    from tandem.agents.router import load_routes
    from tandem.workers.builtin import routing_path

    data = load_routes(routing_path())[::4]  # 62 rows, every class
    ollama.respond_with(MODEL, lambda body: '{"workers": ["health"]}')
    report = asyncio.run(
        evaluate_router(
            builtin_specs(),
            HashEmbedder(),  # type: ignore[arg-type]
            RouterSettings(),
            data,
            folds=2,
            cache_dir=tmp_path,
            second=_stage(ollama),
            second_share=0.2,
        )
    )
    asked = [r for r in report.rows if r.fast is not None]
    assert 0 < len(asked) <= 0.35 * len(data)  # chosen on the training folds, not on these
    assert all(r.stage == "second" and r.chosen == ["health"] for r in asked)
    assert all(r.second_ms is not None for r in asked)
    assert all(r.stage == "fast" and r.second_ms is None for r in report.rows if r.fast is None)
    assert len(ollama.chat_requests(MODEL)) == len(asked)
    assert np.isfinite(report.overall.accuracy)


def test_router_eval_reports_the_second_stage(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tandem.agents.shell.cli import app
    from tandem.workers.builtin import routing_path
    from tandem.workers.testing import FakeOpenAI, fake_config_toml

    data = tmp_path / "routes.jsonl"
    data.write_text("\n".join(routing_path().read_text().splitlines()[::12]) + "\n")  # 21 rows
    router = {"second_stage": f"ollama:{MODEL}", "second_stage_band": 1e6}  # every one grey
    with (
        FakeOllama(chat_models=("qwen2.5:1.5b", MODEL), embed_models=("nomic-embed-text",)) as ol,
        FakeOpenAI() as oa,
    ):
        ol.respond_with(MODEL, lambda body: '{"workers": ["none"]}')
        config = tmp_path / "tandem.toml"
        config.write_text(fake_config_toml(ol, oa, tmp_path / "data", router=router))
        result = CliRunner().invoke(
            app, ["router", "eval", str(data), "--config", str(config)], catch_exceptions=False
        )
        assert len(ol.chat_requests(MODEL)) == 21
    out = result.output
    assert "second stage: 21 of 21 questions (100.0%)" in out, out
    none = sum('expected_workers": []' in line for line in data.read_text().splitlines())
    assert f"the router now for {none}" in out  # "none" was right for the out-of-scope rows
