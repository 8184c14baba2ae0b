"""The hybrid supervisor–worker graph: its wiring and the compiled :class:`TandemGraph`.

::

    START → guard → route ─┬─ direct ─→ worker ─→ check ─┬─ confident ─→ finish
                           │                              ├─ escalate ──→ plan
                           │                              └─ escalate ──→ rescue ─→ finish
                           │                                 (answer from the passages)
                           ├─ plan ─→ Send(worker)×n ─→ synthesize ─→ finish
                           └─ supervisor (no worker fits) ─→ finish

The nodes themselves are :mod:`.nodes`'. Each is async and also has a synchronous twin so
``invoke`` works; each gets its own privacy guard (:class:`~tandem.graphs._guard.StepGuard`)
whose decisions join the node's state update.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Durability

from tandem.agents.llm import SupervisorLLM
from tandem.graphs._guard import StepGuard
from tandem.graphs.checkpoint import DURABILITY, state_types, strict_checkpointer
from tandem.graphs.config import TandemConfig
from tandem.graphs.nodes import Nodes
from tandem.graphs.runtime import Runtime
from tandem.graphs.state import TandemState, WorkerInput
from tandem.graphs.tracing import traced_config, traced_step
from tandem.workers.embedding import run_sync
from tandem.workers.spec import WorkerSpec

__all__ = ["TandemGraph", "build_graph"]

S = TypeVar("S", TandemState, WorkerInput)

Node = Callable[[S, StepGuard], Coroutine[Any, Any, dict[str, Any]]]


class TandemGraph(CompiledStateGraph[TandemState, None, TandemState, TandemState]):
    """The compiled hybrid graph, with the :class:`~tandem.graphs.Runtime` it runs on.

    A LangGraph ``CompiledStateGraph`` in every respect (``invoke``, ``astream``,
    ``get_state`` …; input ``{"query": str}``, output state with ``answer``), plus:

    Attributes:
        runtime: Backends, stores, workers, router and supervisors of this graph.
        default_durability: Used when a run passes no ``durability``: ``"sync"`` with a
            checkpointer (each step is on disk before the next starts, so a run killed
            mid-way resumes without redoing finished model calls), else LangGraph's own.
    """

    def __init__(
        self, *, runtime: Runtime, default_durability: Durability | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        self.default_durability = default_durability

    def stream(
        self,
        input: TandemState | Command[Any] | None,
        config: RunnableConfig | None = None,
        *,
        durability: Durability | None = None,
        **kwargs: Any,
    ) -> Iterator[Any]:
        """LangGraph's ``stream`` (and so ``invoke``) with :attr:`default_durability`
        (traced when :mod:`tandem.graphs.tracing` is on)."""
        return super().stream(
            input,
            traced_config(config),
            durability=durability or self.default_durability,
            **kwargs,
        )

    def astream(
        self,
        input: TandemState | Command[Any] | None,
        config: RunnableConfig | None = None,
        *,
        durability: Durability | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        """LangGraph's ``astream`` (and so ``ainvoke``) with :attr:`default_durability`
        (traced when :mod:`tandem.graphs.tracing` is on)."""
        return super().astream(
            input,
            traced_config(config),
            durability=durability or self.default_durability,
            **kwargs,
        )


def _node(rt: Runtime, fn: Node[S]) -> RunnableLambda[S, dict[str, Any]]:
    """A node usable from ``invoke`` (sync) and ``ainvoke``/``astream`` (async).

    Each execution gets its own :class:`StepGuard`; what it decided joins the node's update.
    With tracing on, each runs in a span under its run's (:mod:`tandem.graphs.tracing`).
    """

    async def step(state: S) -> dict[str, Any]:
        guard = StepGuard(rt, state)
        return guard.update(await fn(state, guard))

    traced = traced_step(fn.__name__, step)

    def sync(state: S, config: RunnableConfig) -> dict[str, Any]:
        return run_sync(traced(state, config), contextvars.copy_context())

    async def afn(state: S, config: RunnableConfig) -> dict[str, Any]:
        return await traced(state, config)

    return RunnableLambda(sync, afunc=afn, name=fn.__name__)


def build_graph(
    config: TandemConfig | None = None,
    *,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    supervisor: BaseChatModel | SupervisorLLM | None = None,
    workers: Sequence[WorkerSpec] = (),
    runtime: Runtime | None = None,
) -> TandemGraph:
    """Build the compiled hybrid graph.

    Args:
        config: Settings (default: :func:`~tandem.graphs.load_config`).
        checkpointer: Any LangGraph checkpointer (threads, resume).
        supervisor: A LangChain ``BaseChatModel`` (or SupervisorLLM) replacing the configured one.
        workers: Extra in-code :class:`~tandem.workers.WorkerSpec` s.
        runtime: A prebuilt runtime (shares backends/stores between graphs).

    Returns:
        The compiled graph (input ``{"query": str}``, output state with ``answer``), its
        runtime as :attr:`TandemGraph.runtime`.
    """
    rt = runtime or Runtime(config, supervisor=supervisor, workers=workers)
    n = Nodes(rt)
    g: StateGraph[TandemState, None, TandemState, TandemState] = StateGraph(TandemState)
    g.add_node("guard", _node(rt, n.guard))
    g.add_node("route", _node(rt, n.route))
    # input_schema: checkpoints of pending Sends (WorkerInput → Subtask) must deserialize
    # under strict msgpack, or a run killed mid fan-out could not resume.
    g.add_node("worker", _node(rt, n.worker), input_schema=WorkerInput)
    g.add_node("check", _node(rt, n.check))
    g.add_node("rescue", _node(rt, n.rescue))
    g.add_node("plan", _node(rt, n.plan))
    g.add_node("synthesize", _node(rt, n.synthesize))
    g.add_node("supervisor", _node(rt, n.supervisor))
    g.add_node("finish", _node(rt, n.finish))
    g.add_edge(START, "guard")
    g.add_edge("guard", "route")
    g.add_conditional_edges("route", n.after_route, ["worker", "plan", "supervisor"])
    g.add_conditional_edges("worker", n.after_worker, ["check", "synthesize"])
    g.add_conditional_edges("check", n.after_check, ["plan", "rescue", "finish"])
    g.add_edge("rescue", "finish")
    g.add_conditional_edges("plan", n.after_plan, ["worker", "synthesize"])
    g.add_edge("synthesize", "finish")
    g.add_edge("supervisor", "finish")
    g.add_edge("finish", END)
    if checkpointer is not None:
        checkpointer = strict_checkpointer(checkpointer, state_types(TandemState, WorkerInput))
    compiled = g.compile(checkpointer=checkpointer, name="tandem").with_config(
        recursion_limit=rt.config.recursion_limit
    )
    # The same copy LangGraph's own ``with_config`` makes, as a TandemGraph.
    fields = {k: v for k, v in compiled.__dict__.items() if k != "__orig_class__"}
    return TandemGraph(
        runtime=rt, default_durability=DURABILITY if checkpointer is not None else None, **fields
    )
