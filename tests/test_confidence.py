"""p_correct decides escalation: a wrong or unsupported direct answer escalates, a supported
one stays local — against the fakes, with scripted log-probabilities and passages."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tandem.graphs.calibrate import Sample, fit_samples, save
from tandem.graphs.evaluate import EvalCase, evaluate
from tandem.workers.backends import OllamaBackend, OllamaSettings
from tandem.workers.backends._base import TOP_LOGPROBS
from tandem.workers.calibration import Calibration, CalibrationFile, calibration_path
from tandem.workers.records import AnswerSignals, Subtask
from tandem.workers.testing import FakeOllama, FakeOpenAI

MODEL = "qwen2.5:1.5b"
REF = f"ollama:{MODEL}"
DIRECT_Q = "How quickly does Brightwater Lettings return deposits?"


def _reply(answer: str, **kw: Any) -> dict[str, Any]:
    return {
        "answer": answer,
        "confidence": kw.get("confidence", 0.9),
        "citations": kw.get("citations", ["S1", "S2", "S3"]),
        "needs_escalation": kw.get("needs_escalation", False),
    }


def _calibrated(data_dir: Path) -> None:
    """A calibration for the fake model, as `tandem calibrate` would store it: the least
    likely answer token and the figures missing from the cited passages pull p down."""
    cal = Calibration(
        model=REF,
        features=["logprob_min", "unsupported"],
        mean=[-1.0, 0.5],
        scale=[1.0, 0.5],
        weights=[1.5, -1.5],
        bias=0.5,
        questions=8,
        right=4,
        auroc=1.0,
        curve=[(0.95, 1), (0.9, 1), (0.85, 1), (0.8, 1), (0.3, 0), (0.2, 0), (0.1, 0), (0.05, 0)],
    )
    path = calibration_path(data_dir, REF)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CalibrationFile(model=REF, pooled=cal).model_dump_json())


async def test_ollama_logprobs_in_the_documented_shape_streamed_or_not(
    fake_ollama: FakeOllama,
) -> None:
    fake_ollama.set_logprobs(MODEL, -0.1, {"10 days": -3.0})
    fake_ollama.script(MODEL, _reply("within 10 days"), _reply("within 10 days"))
    backend = OllamaBackend(MODEL, OllamaSettings(host=fake_ollama.url))
    plain = await backend.chat([{"role": "user", "content": "q"}], schema={}, logprobs=True)
    pieces: list[str] = []
    streamed = await backend.chat(
        [{"role": "user", "content": "q"}], schema={}, logprobs=True, on_token=pieces.append
    )
    assert plain.logprobs is not None and plain.logprobs == streamed.logprobs
    assert "".join(t.token for t in plain.logprobs) == plain.content
    low = [t.token for t in plain.logprobs if t.logprob == -3.0]
    assert low == ["10", " ", "days"]
    request = fake_ollama.chat_requests()[0]
    assert request["logprobs"] is True and request["top_logprobs"] == TOP_LOGPROBS
    # Each token's likeliest alternatives, best first (the fake: the token and the rest).
    first = plain.logprobs[0]
    assert first.top == [-0.1, pytest.approx(math.log(1 - math.exp(-0.1)))]
    # Without the flag: no logprobs asked for, none returned.
    fake_ollama.script(MODEL, _reply("x"))
    bare = await backend.chat([{"role": "user", "content": "q"}], schema={})
    assert bare.logprobs is None and "logprobs" not in fake_ollama.chat_requests()[-1]


def test_fake_server_sends_ollamas_logprob_fields(fake_ollama: FakeOllama) -> None:
    import httpx

    fake_ollama.script(MODEL, "hello world")
    body = {"model": MODEL, "messages": [], "stream": False, "logprobs": True, "top_logprobs": 2}
    data = httpx.post(f"{fake_ollama.url}/api/chat", json=body).json()
    first = data["logprobs"][0]
    assert set(first) == {"token", "logprob", "bytes", "top_logprobs"}
    assert first["bytes"] == list(b"hello") and len(first["top_logprobs"]) == 2
    assert set(first["top_logprobs"][0]) == {"token", "logprob", "bytes"}


async def test_unsupported_direct_answer_escalates_with_the_reason(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, data_dir: Path
) -> None:
    _calibrated(data_dir)
    # The passages say 14 days; the model says 10 and was unsure of it.
    fake_ollama.set_logprobs(MODEL, -0.05, {"10 days": -4.0})
    fake_ollama.script(MODEL, _reply("Brightwater returns deposits within 10 days."))
    answer = (await make_graph().ainvoke({"query": DIRECT_Q}))["answer"]

    first = answer.worker_results[0]
    assert first.signals is not None and first.p_correct is not None
    assert first.signals.unsupported == ["duration 10 days"]
    assert first.signals.logprob_min == -4.0
    assert first.p_correct < 0.5
    assert answer.escalated
    note = next(n for n in answer.notes if "escalated" in n)
    assert "answer's duration 10 days not found in the cited passage" in note
    assert "p_correct" in note
    assert fake_openai.completions()  # the supervisor took over


async def test_supported_direct_answer_stays_local(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, data_dir: Path
) -> None:
    _calibrated(data_dir)
    fake_ollama.set_logprobs(MODEL, -0.05)
    fake_ollama.script(MODEL, _reply("Brightwater returns deposits within 14 days."))
    answer = (await make_graph().ainvoke({"query": DIRECT_Q}))["answer"]

    first = answer.worker_results[0]
    assert first.signals is not None and first.signals.unsupported == []
    assert first.p_correct is not None and first.p_correct > 0.9
    assert not answer.escalated
    assert "14 days" in answer.text
    assert fake_openai.requests == []


async def test_a_confident_wrong_answer_with_a_low_token_probability_escalates(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, data_dir: Path
) -> None:
    """Self-reported 0.9, no checkable span to catch it: the token probabilities do."""
    _calibrated(data_dir)
    fake_ollama.set_logprobs(MODEL, -0.05, {"Brightwater": -5.0})
    fake_ollama.script(MODEL, _reply("Brightwater returns them promptly."))
    answer = (await make_graph().ainvoke({"query": DIRECT_Q}))["answer"]
    assert answer.escalated
    assert any("unsure of its words" in n for n in answer.notes)


async def test_without_a_calibration_the_grounding_checks_must_all_pass(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    graph = make_graph()
    cascade = graph.runtime.cascade["tenancy"]
    assert cascade.origin == "generic" and "tandem calibrate" in cascade.warning
    fake_ollama.script(MODEL, _reply("Brightwater returns deposits within 10 days."))
    answer = (await graph.ainvoke({"query": DIRECT_Q}))["answer"]
    assert answer.escalated
    assert any("10 days not found in the cited passage" in n for n in answer.notes)

    fake_ollama.script(MODEL, _reply("Brightwater returns deposits within 14 days."))
    answer = (await graph.ainvoke({"query": DIRECT_Q}))["answer"]
    assert not answer.escalated


async def test_a_reply_cut_off_by_the_cap_is_closed_without_a_second_call(
    make_graph: Any, fake_ollama: FakeOllama
) -> None:
    loop = "Deposits come back within 14 days. " * 3
    fake_ollama.respond_with(MODEL, lambda body: '{"answer": "' + loop + "Deposits come ba")
    # The fake reports done_reason "stop"; make it say "length" like a capped model.
    original = fake_ollama._chat

    def capped(path: str, body: dict[str, Any]) -> Any:
        reply = original(path, body)
        if reply.body is not None:
            reply.body["done_reason"] = "length"
        return reply

    fake_ollama.routes[("POST", "/api/chat")] = capped
    graph = make_graph()
    run = await graph.runtime.workers["tenancy"].run(
        Subtask(worker="tenancy", instruction=DIRECT_Q, query=DIRECT_Q)
    )
    assert [c.purpose for c in run.calls if c.role == "worker"] == ["answer"]
    assert run.result.status == "ok"
    assert run.result.answer == "Deposits come back within 14 days."
    assert run.result.signals is not None and run.result.signals.truncated


async def test_a_worker_asks_for_the_short_answer_first_under_a_small_cap(
    make_graph: Any, fake_ollama: FakeOllama
) -> None:
    graph = make_graph()
    await graph.runtime.workers["tenancy"].run(
        Subtask(worker="tenancy", instruction=DIRECT_Q, query=DIRECT_Q)
    )
    (request,) = fake_ollama.chat_requests(MODEL)
    assert request["options"]["num_predict"] == 256  # a figure or a sentence, not an essay
    rules = request["messages"][0]["content"]
    assert "the short answer first" in rules and "Never repeat a sentence" in rules


async def test_the_embedded_engine_penalises_repeats(monkeypatch: Any) -> None:
    from tandem.workers.backends import embedded

    seen: dict[str, Any] = {}

    class Llama:
        def reset(self) -> None: ...

        def create_chat_completion(self, **kw: Any) -> dict[str, Any]:
            seen.update(kw)
            return {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}

    async def instance(self: Any, mode: str) -> Any:
        return embedded._Loaded(Llama())  # type: ignore[arg-type]

    monkeypatch.setattr(embedded.EmbeddedBackend, "_instance", instance)
    monkeypatch.setattr(embedded._Loaded, "prepare", lambda self, messages: None)  # no KV cache
    backend = embedded.EmbeddedBackend("qwen2.5-coder-0.5b")
    await backend.chat([{"role": "user", "content": "hi"}])
    assert seen["repeat_penalty"] == 1.1  # Ollama's default too
    off = embedded.EmbeddedBackend(
        "qwen2.5-coder-0.5b", embedded.EmbeddedSettings(repeat_penalty=1.0)
    )
    await off.chat([{"role": "user", "content": "hi"}])
    assert seen["repeat_penalty"] == 1.0


async def test_eval_reports_auroc_ece_and_risk_coverage_side_by_side(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, data_dir: Path
) -> None:
    _calibrated(data_dir)
    fake_ollama.set_logprobs(MODEL, -0.05, {"10 days": -4.0})
    questions = [f"{DIRECT_Q} (case {n})" for n in range(3)]
    cases = [
        EvalCase(question=questions[0], expected_workers=["tenancy"], facts=["14 days"]),
        EvalCase(question=questions[1], expected_workers=["tenancy"], facts=["14 days"]),
        EvalCase(question=questions[2], expected_workers=["tenancy"], answerable=False),
    ]
    replies = {
        "(case 0)": _reply("Within 14 days."),
        "(case 1)": _reply("Within 10 days.", confidence=0.95),
        "(case 2)": _reply("Within 10 days.", confidence=0.95),
    }

    def respond(body: dict[str, Any]) -> str:
        task = str(body["messages"][-1]["content"])
        return json.dumps(next(r for key, r in replies.items() if key in task))

    fake_ollama.respond_with(MODEL, respond)
    report = await evaluate(make_graph(), cases)
    assert [r.local_right for r in report.rows] == [True, False, False]
    assert report.judged == 3
    assert report.auroc == 1.0  # p_correct ranks the right answer first
    assert report.self_auroc == 0.0  # the model was surer of the wrong ones
    assert report.ece is not None and report.self_ece is not None
    assert len(report.risk_coverage) == len(report.self_risk_coverage) == 10
    dumped = json.loads(report.model_dump_json())
    assert {"auroc", "ece", "self_auroc", "self_ece", "risk_coverage"} <= set(dumped)


def _sample(right: bool, lp: float, unsupported: int) -> Sample:
    return Sample(
        question="q",
        worker="tenancy",
        model=REF,
        answer="a",
        right=right,
        signals=AnswerSignals(
            answer_tokens=3,
            logprob_mean=lp,
            logprob_min=lp,
            logprob_p10=lp,
            spans=["number 1"] * max(unsupported, 1),
            unsupported=["number 1"] * unsupported,
            unsupported_anywhere=["number 1"] * unsupported,  # in no passage, cited or not
            citations=1,
            citations_valid=True,
            self_confidence=0.9,
        ),
    )


def test_calibrate_fits_and_stores_where_runs_find_it(tmp_path: Path) -> None:
    samples = [_sample(True, -0.1 - i / 100, 0) for i in range(30)]
    samples += [_sample(False, -1.5 - i / 50, i % 2) for i in range(20)]
    samples += [_sample(False, -0.2, 1) for _ in range(5)] + [_sample(True, -1.2, 0)]
    fitted = fit_samples(samples, REF, embed_model="ollama:e", source="test.jsonl", per="model")
    assert fitted.pooled is not None and fitted.workers == {}
    assert fitted.pooled.auroc is not None and fitted.pooled.auroc > 0.9
    assert len(fitted.pooled.curve) == len(samples)
    found = fitted.pooled.threshold_for(0.05)
    assert found is not None and 0.0 < found[1] < 1.0
    path = save(tmp_path, fitted)
    assert path == calibration_path(tmp_path, REF) and path.is_file()


async def test_a_risk_target_no_threshold_meets_says_so_in_the_note(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI, data_dir: Path
) -> None:
    _calibrated(data_dir)
    path = calibration_path(data_dir, REF)
    stored = CalibrationFile.model_validate_json(path.read_text())
    assert stored.pooled is not None
    # Its most confident calibration answers were wrong: no threshold keeps ≤ 5 % wrong.
    worst = [(0.95, 0), (0.9, 0), (0.85, 1), (0.8, 1), (0.3, 0), (0.2, 0)]
    stored.pooled = stored.pooled.model_copy(update={"curve": worst})
    path.write_text(stored.model_dump_json())
    fake_ollama.set_logprobs(MODEL, -0.05)
    fake_ollama.script(MODEL, _reply("Brightwater returns deposits within 14 days."))
    graph = make_graph()
    assert graph.runtime.cascade["tenancy"].coverage == 0.0
    answer = (await graph.ainvoke({"query": DIRECT_Q}))["answer"]

    assert answer.worker_results[0].p_correct is not None
    assert answer.worker_results[0].p_correct > 0.9  # a good answer, by its own signals
    assert answer.escalated
    note = next(n for n in answer.notes if "escalated" in n)
    assert f"no threshold keeps {REF}'s answers within [cascade] max_local_error = 0.05" in note
    assert "< 1.00" not in note
