"""The sensitive-span detector runs only when something can leave the machine.

Loading it costs seconds per process; when every model (supervisor, workers, embeddings) is
on this machine nothing can leave, so nothing is scanned — unless ``[privacy]
scan_local_runs`` asks for the report anyway. A remote supervisor always means a scan.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

import tandem.graphs._guard as guard_module
from tandem.agents.shell.render import render_answer
from tandem.graphs.testing import FakeOllama, FakeOpenAI

EMAIL = "jane.doe@example.com"
QUERY = f"How quickly does Brightwater Lettings return deposits to {EMAIL}?"
SURE = {
    "answer": "Within 14 days of the end of the tenancy [1].",
    "confidence": 0.95,
    "citations": [1],
    "needs_escalation": False,
}


def _no_detector(*_: Any, **__: Any) -> Any:
    raise AssertionError("the detector was loaded although nothing can leave the machine")


def _shown(answer: Any) -> str:
    out = io.StringIO()
    render_answer(Console(file=out, width=80, color_system=None), answer, show_text=False)
    return " ".join(out.getvalue().split())  # lines wrap at 80 columns


async def test_an_all_local_setup_never_loads_the_detector(
    make_graph: Any, fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ollama.script("qwen2.5:1.5b", SURE)
    graph = make_graph()  # the fake supervisor is on loopback and trusted: local
    assert graph.runtime.nothing_leaves
    monkeypatch.setattr(guard_module, "detector_for", _no_detector)
    answer = (await graph.ainvoke({"query": QUERY}))["answer"]
    assert answer.text
    assert not answer.privacy.scanned
    assert answer.privacy.findings == {}
    assert answer.ledger.totals.remote_calls == 0
    assert "not scanned: every model runs on this machine" in _shown(answer)


async def test_scan_local_runs_reports_spans_anyway(
    make_graph: Any, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script("qwen2.5:1.5b", SURE)
    graph = make_graph(privacy={"scan_local_runs": True})
    answer = (await graph.ainvoke({"query": QUERY}))["answer"]
    assert answer.privacy.scanned
    assert answer.privacy.findings == {"EMAIL": 1}
    assert "sensitive spans: EMAIL×1" in _shown(answer)


async def test_a_remote_supervisor_means_every_run_is_scanned(
    make_graph: Any, fake_ollama: FakeOllama, fake_openai: FakeOpenAI
) -> None:
    fake_ollama.script("qwen2.5:1.5b", SURE)  # answered locally, but it could have escalated
    graph = make_graph(supervisor={"egress": "remote"})
    assert not graph.runtime.nothing_leaves
    answer = (await graph.ainvoke({"query": QUERY}))["answer"]
    assert not answer.escalated
    assert answer.privacy.scanned
    assert answer.privacy.findings == {"EMAIL": 1}
    assert answer.privacy.redacted_query.endswith("deposits to <EMAIL_1>?")
    assert fake_openai.completions() == []
