"""OpenTelemetry traces of runs: one span per run, a child per graph node and per model call.

Off by default, and free when off: nothing is imported or wrapped. Tracing turns on

* by itself, for the library, the CLI and ``tandem serve`` alike, when the standard
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set: spans go
  over OTLP (http/protobuf; ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` for gRPC) from a
  ``service.name`` of ``OTEL_SERVICE_NAME`` or ``tandem``. ``OTEL_SDK_DISABLED=true`` wins.
* or when a program calls :func:`enable` with its own ``TracerProvider`` (an application
  that already exports traces, or a test with an in-memory exporter).

A run is ``invoke_workflow tandem``; its children are the nodes (``invoke_agent <worker>``
for a specialist, ``tandem.node <name>`` for the others) and, under each node, its model
calls (``chat <model>`` / ``embeddings <model>``, span kind CLIENT). Attributes follow the
OpenTelemetry GenAI semantic conventions (``gen_ai.operation.name``, ``gen_ai.request.model``,
``gen_ai.provider.name``, ``gen_ai.usage.input_tokens``/``output_tokens``,
``gen_ai.conversation.id``) plus tandem's own: ``tandem.route.kind``/``workers``,
``tandem.where`` (local/remote), ``tandem.cost_usd``, ``tandem.local_share`` …

No question, prompt or answer text is recorded unless
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` (or ``enable(capture_content=True)``):
then the run span carries ``gen_ai.input.messages`` (the question) and
``gen_ai.output.messages`` (the answer), as the user sees them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableConfig

from tandem.workers.records import CallRecord
from tandem.workers.telemetry import add_call_observer, remove_call_observer

__all__ = ["disable", "enable", "enabled", "traced_config", "traced_step"]

log = logging.getLogger("tandem.tracing")

_SCOPE = "tandem"
_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


class _State:
    on = False
    checked_env = False
    content = False
    provider: Any = None
    handler: _RunSpans | None = None
    lock = threading.Lock()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def enabled() -> bool:
    """Whether runs are traced (turned on by :func:`enable` or by the OTLP environment)."""
    if not _State.on and not _State.checked_env:
        _State.checked_env = True
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        if endpoint and not _truthy(os.environ.get("OTEL_SDK_DISABLED")):
            try:
                enable()
            except ImportError as exc:  # an exporter that is not installed: run untraced
                log.warning(
                    "OTEL_EXPORTER_OTLP_ENDPOINT is set but traces cannot be exported (%s); "
                    "install opentelemetry-exporter-otlp-proto-http (or -grpc with "
                    "OTEL_EXPORTER_OTLP_PROTOCOL=grpc)",
                    exc,
                )
    return _State.on


def enable(provider: Any = None, *, capture_content: bool | None = None) -> None:
    """Trace every run from now on.

    Args:
        provider: The OpenTelemetry ``TracerProvider`` to create spans with. Default: the
            global one if the application installed an SDK provider, else a new SDK provider
            exporting over OTLP as the ``OTEL_EXPORTER_OTLP_*`` variables say (installed as
            the global provider).
        capture_content: Record the question and the answer on run spans (default:
            ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``).
    """
    with _State.lock:
        _State.provider = provider if provider is not None else _default_provider()
        _State.content = (
            _truthy(os.environ.get(_CONTENT_ENV)) if capture_content is None else capture_content
        )
        _State.handler = _State.handler or _RunSpans()
        add_call_observer(_call_span)
        _State.on = True


def disable() -> None:
    """Stop tracing (runs already started finish their spans)."""
    with _State.lock:
        _State.on = False
        _State.checked_env = True  # the environment does not turn it back on
        _State.provider = None
        remove_call_observer(_call_span)


def _default_provider() -> Any:
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if type(current).__module__.startswith("opentelemetry.sdk"):
        return current  # the application set one up: join its traces
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter: Any
    if os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").startswith("grpc"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        exporter = HttpExporter()
    name = os.environ.get("OTEL_SERVICE_NAME") or "tandem"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def _tracer() -> Any:
    from opentelemetry import trace

    provider = _State.provider or trace.get_tracer_provider()
    return provider.get_tracer(_SCOPE)


def traced_config(config: RunnableConfig | None) -> RunnableConfig | None:
    """``config`` with the run-span callback added when tracing is on (else unchanged)."""
    if not enabled() or _State.handler is None:
        return config
    out: RunnableConfig = dict(config or {})  # type: ignore[assignment]
    callbacks = out.get("callbacks")
    if callbacks is None:
        out["callbacks"] = [_State.handler]
    elif isinstance(callbacks, list):
        if _State.handler not in callbacks:
            out["callbacks"] = [*callbacks, _State.handler]
    else:  # a callback manager
        manager = callbacks.copy()
        manager.add_handler(_State.handler, inherit=True)
        out["callbacks"] = manager
    return out


class _RunSpans(BaseCallbackHandler):
    """Opens a span when a graph run starts and ends it with the run.

    LangGraph reports each run, node and inner runnable to its callbacks; this keeps the
    open run spans and, for every callback run id, the graph run it belongs to, so a node
    finds its run's span (:func:`traced_step`). Runs nested in someone else's chain are not
    traced (their spans would have no parent of ours).
    """

    run_inline = True
    ignore_llm = True
    ignore_retry = True
    ignore_agent = True
    ignore_retriever = True
    ignore_chat_model = True
    ignore_custom_event = True

    def __init__(self) -> None:
        self.spans: dict[UUID, Any] = {}
        self.root: dict[UUID, UUID] = {}
        self.members: dict[UUID, list[UUID]] = {}
        self._lock = threading.Lock()

    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        with self._lock:
            if parent_run_id is not None:
                root = self.root.get(parent_run_id)
                if root is not None:
                    self.root[run_id] = root
                    self.members[root].append(run_id)
                return
            self.root[run_id] = run_id
            self.members[run_id] = [run_id]
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": "tandem",
            "gen_ai.agent.name": "tandem",
        }
        thread = (metadata or {}).get("thread_id")
        if thread:
            attrs["gen_ai.conversation.id"] = str(thread)
        query = inputs.get("query") if isinstance(inputs, dict) else None
        if _State.content and isinstance(query, str):
            attrs["gen_ai.input.messages"] = _messages("user", query)
        if not isinstance(inputs, dict) or "query" not in inputs:
            attrs["tandem.resumed"] = True  # a Command or None: a paused/killed run goes on
        self.spans[run_id] = _tracer().start_span("invoke_workflow tandem", attributes=attrs)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, outputs, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, None, error)

    def _end(self, run_id: UUID, outputs: Any, error: BaseException | None) -> None:
        with self._lock:
            if self.root.get(run_id) != run_id:
                self.root.pop(run_id, None)  # a node or inner runnable of a run
                return
            for member in self.members.pop(run_id, []):
                self.root.pop(member, None)
            span = self.spans.pop(run_id, None)
        if span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        answer = outputs.get("answer") if isinstance(outputs, dict) else None
        if isinstance(outputs, dict) and outputs.get("__interrupt__"):
            span.set_attribute("tandem.paused", True)  # waiting for an egress approval
        elif answer is not None:
            _answer_attributes(span, answer)
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        span.end()

    def run_span(self, config: RunnableConfig | None) -> Any:
        """The span of the graph run a node's ``config`` belongs to (None if untraced)."""
        manager = (config or {}).get("callbacks")
        run_id = getattr(manager, "parent_run_id", None)
        with self._lock:
            root = self.root.get(run_id) if run_id is not None else None
            return self.spans.get(root) if root is not None else None


def _messages(role: str, text: str) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])


def _answer_attributes(span: Any, answer: Any) -> None:
    t = answer.ledger.totals
    span.set_attribute("tandem.route.kind", str(answer.route.kind))
    span.set_attribute("tandem.route.workers", [str(w) for w in answer.route.workers])
    span.set_attribute("tandem.escalated", bool(answer.escalated))
    span.set_attribute("gen_ai.usage.input_tokens", int(t.tokens_in))
    span.set_attribute("gen_ai.usage.output_tokens", int(t.tokens_out))
    span.set_attribute("tandem.calls", int(t.calls))
    span.set_attribute("tandem.cost_usd", float(t.cost_usd))
    span.set_attribute("tandem.local_share", float(t.local_share))
    span.set_attribute("tandem.privacy.policy", str(answer.privacy.policy))
    if _State.content:
        span.set_attribute("gen_ai.output.messages", _messages("assistant", str(answer.text)))


_IN_NODE: contextvars.ContextVar[bool] = contextvars.ContextVar("tandem_traced", default=False)


@contextmanager
def _node_span(name: str, state: Any, config: RunnableConfig | None) -> Iterator[None]:
    handler = _State.handler
    if not _State.on or handler is None:
        yield
        return
    from opentelemetry import trace

    run = handler.run_span(config)
    parent = trace.set_span_in_context(run) if run is not None else None
    attrs: dict[str, Any] = {"tandem.node": name}
    span_name = f"tandem.node {name}"
    subtask = state.get("subtask") if isinstance(state, dict) else None
    if name == "worker" and subtask is not None:
        span_name = f"invoke_agent {subtask.worker}"
        attrs["gen_ai.operation.name"] = "invoke_agent"
        attrs["gen_ai.agent.name"] = str(subtask.worker)
        attrs["tandem.phase"] = str(state.get("phase", ""))
    with _tracer().start_as_current_span(span_name, context=parent, attributes=attrs):
        token = _IN_NODE.set(True)
        try:
            yield
        finally:
            _IN_NODE.reset(token)


def traced_step(
    name: str, step: Callable[[Any], Coroutine[Any, Any, dict[str, Any]]]
) -> Callable[[Any, RunnableConfig | None], Coroutine[Any, Any, dict[str, Any]]]:
    """``step(state)`` as ``node(state, config)``, in a node span when tracing is on."""

    async def node(state: Any, config: RunnableConfig | None) -> dict[str, Any]:
        if not _State.on:
            return await step(state)
        with _node_span(name, state, config):
            return await step(state)

    return node


_PROVIDERS = {"ollama": "ollama", "ollama_chat": "ollama", "embedded": "llama_cpp"}


def _call_span(call: CallRecord) -> None:
    """A finished model call as a span under the node that made it (an observer)."""
    if not _State.on or not _IN_NODE.get():
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    end = time.time_ns()
    start = end - int(max(0.0, call.seconds) * 1e9)
    operation = "embeddings" if call.role == "embed" else "chat"
    model = str(call.model)
    prefix = model.split(":", 1)[0] if ":" in model.split("/", 1)[0] else model.split("/", 1)[0]
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.request.model": model,
        "gen_ai.provider.name": _PROVIDERS.get(prefix, prefix),
        "gen_ai.usage.input_tokens": int(call.tokens_in),
        "gen_ai.usage.output_tokens": int(call.tokens_out),
        "tandem.role": str(call.role),
        "tandem.where": str(call.where),
        "tandem.purpose": str(call.purpose),
        "tandem.attempts": int(call.attempts),
        "tandem.cost_usd": float(call.cost_usd),
        "tandem.bytes_sent": int(call.bytes_sent),
    }
    if call.worker:
        attrs["gen_ai.agent.name"] = str(call.worker)
    if call.host:
        attrs["server.address"] = str(call.host)
    span = _tracer().start_span(
        f"{operation} {model}", kind=SpanKind.CLIENT, attributes=attrs, start_time=start
    )
    if call.error:
        span.set_attribute("error.type", str(call.error).split(":", 1)[0][:64])
        span.set_status(Status(StatusCode.ERROR, str(call.error)[:200]))
    span.end(end_time=end)
