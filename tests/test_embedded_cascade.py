"""p_correct on the real bundled 0.5B specialist with the shipped coefficients: an answer is
kept local exactly when its p_correct reaches the threshold, and an in-domain question the
corpus does not answer escalates with the reason in the notes. The supervisor is scripted
(the escalation is what is tested)."""

from __future__ import annotations

from typing import Any

import pytest

from tandem.graphs import Answer, TandemConfig, build_graph
from tandem.graphs.testing import ScriptedSupervisor
from tandem.workers.builtin import specs

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(1800)]


def _graph(tmp_path: Any, supervisor: ScriptedSupervisor) -> Any:
    config = TandemConfig(data_dir=tmp_path, workers=specs(), builtin_workers=False)
    return build_graph(config, supervisor=supervisor)


async def test_the_real_models_answer_is_judged_by_the_shipped_calibration(
    tmp_path: Any,
) -> None:
    supervisor = ScriptedSupervisor(
        {"subtasks": [], "rationale": "checking"},
        "Deposits come back within 14 days.",
        where="local",
    )
    graph = _graph(tmp_path, supervisor)
    cascade = graph.runtime.cascade["tenancy"]
    assert cascade.origin == "shipped" and not cascade.warning
    state = await graph.ainvoke(
        {"query": "How quickly does Brightwater Lettings return a tenant's deposit?"}
    )
    answer: Answer = state["answer"]
    result = answer.worker_results[0]
    assert result.worker == "tenancy" and result.p_correct is not None
    assert result.signals is not None and result.signals.logprob_mean is not None
    # Kept local exactly when p_correct reaches the threshold; else the notes say why.
    assert answer.escalated is (result.p_correct < cascade.threshold)
    if answer.escalated:
        assert any(f"p_correct {result.p_correct:.2f}" in n for n in answer.notes)
    else:
        assert supervisor.calls == []


async def test_an_unanswerable_question_escalates_with_the_reason(tmp_path: Any) -> None:
    supervisor = ScriptedSupervisor(
        {"subtasks": [], "rationale": "the specialist's passages do not say"},
        "The documents do not give that phone number.",
        where="local",
    )
    graph = _graph(tmp_path, supervisor)
    state = await graph.ainvoke(
        {"query": "What is the phone number of the Velorian Deposit Guarantee Scheme?"}
    )
    answer: Answer = state["answer"]
    assert answer.worker_results[0].p_correct is not None
    assert answer.escalated
    assert any("p_correct" in n and "escalated to the supervisor" in n for n in answer.notes)
    assert supervisor.calls, "the supervisor was never asked"
