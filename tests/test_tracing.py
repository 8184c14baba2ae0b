"""OpenTelemetry: one span per run, a child per node and per model call, no text unless asked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tandem.graphs import Session, tracing

DIRECT_Q = "How quickly does Brightwater Lettings return a tenant's deposit?"
PLANNED_Q = (
    "Can my landlord raise the rent by 8% this year? And how much of my rent can I claim "
    "back through the Renters' Tax Credit?"
)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider, capture_content=False)
    try:
        yield exporter
    finally:
        tracing.disable()


def _children(all_spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[ReadableSpan]:
    return [
        s
        for s in all_spans
        if s.parent is not None and s.parent.span_id == parent.context.span_id  # type: ignore[union-attr]
    ]


def _run_spans(all_spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    runs = [s for s in all_spans if s.name == "invoke_workflow tandem"]
    return sorted(runs, key=lambda s: s.start_time or 0)


async def test_each_run_is_one_trace_of_nodes_and_model_calls(
    make_graph: Callable[..., Any], spans: InMemorySpanExporter
) -> None:
    graph = make_graph()
    await graph.runtime.ensure_ingested()
    spans.clear()
    direct, planned = await asyncio.gather(  # concurrent runs keep their spans apart
        graph.ainvoke({"query": DIRECT_Q}), graph.ainvoke({"query": PLANNED_Q})
    )
    finished = spans.get_finished_spans()
    runs = _run_spans(finished)
    assert len(runs) == 2
    for out in (direct, planned):
        answer = out["answer"]
        (run,) = [r for r in runs if r.attributes["tandem.route.kind"] == answer.route.kind]  # type: ignore[index]
        attrs = dict(run.attributes or {})
        assert attrs["gen_ai.operation.name"] == "invoke_workflow"
        assert attrs["tandem.route.workers"] == tuple(answer.route.workers)
        assert attrs["gen_ai.usage.input_tokens"] == answer.ledger.totals.tokens_in
        assert attrs["tandem.local_share"] == answer.ledger.totals.local_share
        nodes = _children(finished, run)
        names = {n.name for n in nodes}
        assert {"tandem.node guard", "tandem.node route", "tandem.node finish"} <= names
        workers = [n for n in nodes if n.name.startswith("invoke_agent ")]
        assert sorted(w.attributes["gen_ai.agent.name"] for w in workers) == sorted(  # type: ignore[index]
            r.worker for r in answer.worker_results
        )
        in_trace = [s for s in finished if s.context.trace_id == run.context.trace_id]
        calls = [s for s in in_trace if s.kind == SpanKind.CLIENT]
        assert len(calls) == len(answer.ledger.calls)  # every ledger row, and no other run's
        node_ids = {n.context.span_id for n in nodes}
        assert all(c.parent is not None and c.parent.span_id in node_ids for c in calls)
        chat = [c for c in calls if c.attributes["gen_ai.operation.name"] == "chat"]  # type: ignore[index]
        assert chat and all(c.attributes["gen_ai.request.model"] for c in chat)  # type: ignore[index]
        assert all(c.attributes["gen_ai.usage.output_tokens"] > 0 for c in chat)  # type: ignore[index, operator]
    planned_run = next(r for r in runs if r.attributes["tandem.route.kind"] == "plan")  # type: ignore[index]
    planned_nodes = {n.name for n in _children(finished, planned_run)}
    assert {"tandem.node plan", "tandem.node synthesize"} <= planned_nodes
    sup = [
        s
        for s in finished
        if s.context.trace_id == planned_run.context.trace_id
        and (s.attributes or {}).get("tandem.role") == "supervisor"
    ]
    assert {s.attributes["tandem.purpose"] for s in sup} >= {"plan", "synthesize"}  # type: ignore[index]
    for span in finished:  # no question or answer text anywhere by default
        for value in (span.attributes or {}).values():
            assert "Brightwater" not in str(value) and "Renters" not in str(value)


async def test_session_runs_and_threads_are_traced_with_content_on_request(
    make_graph: Callable[..., Any], spans: InMemorySpanExporter
) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    tracing.enable(spans_provider(spans), capture_content=True)
    saver = InMemorySaver()
    session = Session(make_graph(checkpointer=saver), saver, thread_id="trace-1")
    answer = await session.ask(DIRECT_Q)
    (run,) = _run_spans(spans.get_finished_spans())
    attrs = dict(run.attributes or {})
    assert attrs["gen_ai.conversation.id"] == "trace-1"
    assert DIRECT_Q in str(attrs["gen_ai.input.messages"])
    assert answer.text in str(attrs["gen_ai.output.messages"])


def spans_provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def test_tracing_off_records_nothing_and_leaves_runs_alone(
    make_graph: Callable[..., Any],
) -> None:
    exporter = InMemorySpanExporter()
    tracing.enable(spans_provider(exporter))
    tracing.disable()
    out = await make_graph().ainvoke({"query": DIRECT_Q})
    assert out["answer"].text and not exporter.get_finished_spans()
    assert not tracing.enabled()
