"""The hybrid supervisor–worker graph.

::

    START → guard → route ─┬─ direct ─→ worker ─→ check ─┬─ confident ─→ finish
                           │                              └─ escalate ──→ plan
                           ├─ plan ─→ Send(worker)×n ─→ synthesize ─→ finish
                           └─ supervisor (no worker fits) ─→ finish

Nodes are async; each also has a synchronous twin so ``invoke`` works. Model
and store failures degrade the answer (recorded in ``notes``), never crash it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph._internal._constants import CONFIG_KEY_DURABILITY
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from tandem.agents.privacy import GuardReport, Redactor, restore
from tandem.agents.router import RouteDecision
from tandem.agents.supervisor import Plan, PlanStep, Supervisor, subtasks_from_plan
from tandem.graphs import _fallback as reliability
from tandem.graphs import _privacy_nodes as privacy
from tandem.graphs._followup import context_query, route_follow_up
from tandem.graphs._stream import answer_sink, emit
from tandem.graphs.config import TandemConfig
from tandem.graphs.runtime import Runtime
from tandem.graphs.state import Answer, TandemState, WorkerInput
from tandem.workers.embedding import run_sync
from tandem.workers.errors import RunError, StoreError, UsageError
from tandem.workers.records import CallRecord, Citation, Subtask, WorkerResult

__all__ = ["build_graph"]

MAX_QUERY_CHARS = 8000


def _history(messages: Sequence[AnyMessage], limit: int = 6, width: int = 400) -> str:
    lines = []
    for m in list(messages)[-limit:]:
        who = "user" if isinstance(m, HumanMessage) else "assistant"
        text = " ".join(str(m.content).split())
        lines.append(f"{who}: {text[:width]}{'…' if len(text) > width else ''}")
    return "\n".join(lines)


def _token_sink() -> Callable[[str], None] | None:
    try:
        writer = get_stream_writer()
    except Exception:
        return None
    return lambda piece: writer({"event": "token", "text": piece})


class _Nodes:
    """The graph's nodes, bound to a :class:`Runtime`."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def _sup(self, state: TandemState) -> Supervisor:
        # Budgets, redaction, `ask` approval, egress audit: graphs/_privacy_nodes.py.
        return privacy.guarded_supervisor(self.rt, state)

    def _outbound(
        self, state: TandemState, sup: Supervisor
    ) -> tuple[Redactor | None, str, str, list[WorkerResult]]:
        """Query, history and worker results as ``sup`` may see them (redacted if remote)."""
        history = _history(state.get("messages") or [])
        return privacy.outbound(self.rt, state, sup, state["query"], history)

    async def guard(self, state: TandemState) -> dict[str, Any]:
        query = (state.get("query") or "").strip()
        if not query:
            raise UsageError("the query is empty")
        limit = self.rt.config.reliability.max_query_chars
        if len(query) > limit:
            raise UsageError(
                f"the query is {len(query)} characters; the limit is {limit}",
                hint="shorten it or ingest long material into a worker's store "
                "([reliability] max_query_chars)",
            )
        policy = self.rt.config.privacy.policy
        sup = self.rt.supervisor_for(policy)
        redactor, redacted, counts, ms = privacy.timed_detect(self.rt, query)
        report = GuardReport(
            policy=policy,
            findings=counts,
            redacted_query=redacted,
            mapping=redactor.mapping,
            supervisor_where=sup.llm.where,
            detect_ms=ms,
        )
        return {
            "query": query,
            "guard": report,
            "results": None,
            "calls": None,
            "notes": None,
            "escalated": False,
            "draft": "",
            "plan": Plan(),
            "query_vector": None,
            "deadline": reliability.deadline_at(self.rt),
            **privacy.NEW_TURN,
        }

    async def route(self, state: TandemState) -> dict[str, Any]:
        calls: list[CallRecord] = []
        try:
            decision, vector = await self.rt.router.decide(state["query"], calls)
            decision, vector = await route_follow_up(
                self.rt.router, state["query"], state.get("messages") or [], decision, vector, calls
            )
        except RunError as exc:
            return {
                "route": RouteDecision(kind="plan", reason=f"router unavailable: {exc}"),
                "calls": calls,
                "notes": [f"routing failed, the supervisor plans instead: {exc}"],
            }
        return {"route": decision, "query_vector": vector, "calls": calls, "phase": "direct"}

    def after_route(self, state: TandemState) -> Any:
        decision = state["route"]
        if decision.kind == "direct":
            subtask = Subtask(
                worker=decision.workers[0], instruction=state["query"], query=context_query(state)
            )
            payload: WorkerInput = {
                "subtask": subtask,
                "query_vector": state.get("query_vector"),
                "phase": "direct",
                "deadline": state.get("deadline"),
            }
            return [Send("worker", payload)]
        return decision.kind

    async def worker(self, data: WorkerInput) -> dict[str, Any]:
        subtask = data["subtask"]
        worker = self.rt.workers.get(subtask.worker)
        if worker is None:
            failed = WorkerResult(
                worker=subtask.worker,
                instruction=subtask.instruction,
                status="failed",
                reason="no such worker",
            )
            return {"results": [failed]}
        notes: list[str] = []
        try:
            await self.rt.ensure_ingested([subtask.worker])
        except RunError as exc:
            if not isinstance(exc, StoreError):  # a failing store is reported once, below
                notes.append(f"could not ingest knowledge for '{subtask.worker}': {exc}")
        direct = data.get("phase") == "direct"  # a direct answer streams to the user
        # Fallback model/host and the run deadline: graphs/_fallback.py.
        run, more = await reliability.run_worker(
            self.rt,
            worker,
            subtask,
            query_vector=data.get("query_vector"),
            on_token=answer_sink(subtask.worker) if direct else None,
            deadline=data.get("deadline"),
        )
        notes.extend(more)
        privacy.note_passages(self.rt, subtask.worker, run.passages)
        if run.result.status == "failed":
            notes.append(f"worker '{subtask.worker}' failed: {run.result.reason}")
        return {"results": [run.result], "calls": run.calls, "notes": notes}

    def after_worker(self, state: TandemState) -> str:
        return "check" if state.get("phase") == "direct" else "synthesize"

    async def check(self, state: TandemState) -> dict[str, Any]:
        result = state["results"][-1]
        spec = self.rt.specs.get(result.worker)
        threshold = spec.min_confidence if spec else 0.5
        if result.status == "ok" and not result.needs_escalation and result.confidence >= threshold:
            return {"draft": result.answer, "escalated": False}
        why = (
            result.reason
            if result.status == "failed"
            else "asked to escalate"
            if result.needs_escalation
            else f"confidence {result.confidence:.2f} < {threshold:.2f}"
        )
        emit({"event": "reset", "reason": f"escalated: {why}"})  # drop the streamed draft
        return {
            "escalated": True,
            "notes": [f"'{result.worker}' was not confident ({why}); escalated to the supervisor"],
        }

    def after_check(self, state: TandemState) -> str:
        return "plan" if state.get("escalated") else "finish"

    async def plan(self, state: TandemState) -> dict[str, Any]:
        sup = self._sup(state)
        redactor, query, history, prior = self._outbound(state, sup)
        specs = list(self.rt.specs.values())
        try:
            plan, calls, notes = await reliability.within(
                state.get("deadline"),
                sup.plan(query, specs, prior=prior, history=history),
                "the supervisor's plan",
                self.rt,
            )
        except RunError as exc:
            fallback = state["route"].workers or [
                n for n, s in state["route"].scores.items() if s >= self.rt.config.router.min_score
            ]
            plan = Plan(
                subtasks=[],
                rationale=f"supervisor unreachable; asked the router's workers: {fallback}",
            )
            plan.subtasks = [PlanStep(worker=w, instruction=state["query"]) for w in fallback]
            calls = [sup.failed_record(exc, "plan")]
            notes = [f"the supervisor could not plan ({exc}); used the router's workers"]
        route = state["route"]
        covered = {step.worker for step in plan.subtasks}
        missing = [w for w in route.workers if w not in covered] if route.kind == "plan" else []
        if plan.subtasks and missing:
            # The router matched these specialists to parts of the question (small planners
            # often send every part to one of them); dropping one would drop that part.
            extra = [PlanStep(worker=w, instruction=state["query"]) for w in missing]
            plan.subtasks = [*extra, *plan.subtasks][: self.rt.config.max_subtasks]
            notes = [*notes, f"added the router's {missing} that the plan left out"]
        if not plan.subtasks and route.workers:
            # A planner that returns nothing usable should not leave the question to the
            # supervisor alone when the router already knows which specialists fit.
            workers = route.workers
            plan.subtasks = [PlanStep(worker=w, instruction=state["query"]) for w in workers]
            notes = [
                *notes,
                f"the supervisor's plan was empty; asked the router's workers {workers}",
            ]
        if redactor:
            mapping = redactor.mapping
            for step in plan.subtasks:
                step.instruction = restore(step.instruction, mapping)
        return {"plan": plan, "calls": calls, "notes": notes, "phase": "planned"}

    def after_plan(self, state: TandemState) -> Any:
        subtasks = subtasks_from_plan(state["plan"], context_query(state))
        if not subtasks:
            return "synthesize"
        deadline = state.get("deadline")
        return [
            Send(
                "worker",
                {"subtask": st, "query_vector": None, "phase": "planned", "deadline": deadline},
            )
            for st in subtasks
        ]

    async def synthesize(self, state: TandemState) -> dict[str, Any]:
        sup = self._sup(state)
        deadline = state.get("deadline")
        history = _history(state.get("messages") or [])
        # Failed subtasks go to the supervisor first (graphs/_fallback.py), as the privacy
        # guard prepares text for it; a local_only worker's part never leaves the machine.
        private = set() if sup.llm.where != "remote" else privacy._local_only_workers(self.rt)
        added, calls, notes, down = await reliability.escalate_failed(
            self.rt,
            sup,
            [r for r in state.get("results") or [] if r.worker not in private],
            redact=lambda text: privacy.outbound(self.rt, state, sup, text, "")[1],
            history=privacy.outbound(self.rt, state, sup, "", history)[2],
            deadline=deadline,
        )
        local = [*(state.get("results") or []), *added]
        update: dict[str, Any] = {"results": added, "calls": calls, "notes": notes}
        try:
            if down is not None:
                raise down  # the supervisor is unreachable: do not wait for it a second time
            _, query, history, results = self._outbound({**state, "results": local}, sup)
            text, more = await reliability.within(
                deadline,
                sup.synthesize(query, results, history=history, on_token=_token_sink()),
                "the synthesis",
                self.rt,
            )
        except RunError as exc:
            return {
                **update,
                "draft": reliability.local_synthesis(local),
                "calls": [*calls, *([] if exc is down else [sup.failed_record(exc, "synthesize")])],
                "notes": [
                    *notes,
                    f"the supervisor could not synthesize ({exc}); joined answers locally",
                ],
            }
        return {**update, "draft": text, "calls": [*calls, *more]}

    async def supervisor(self, state: TandemState) -> dict[str, Any]:
        sup = self._sup(state)
        _, query, history, _ = self._outbound(state, sup)
        try:
            text, calls = await reliability.within(
                state.get("deadline"),
                sup.answer(query, history=history, on_token=_token_sink()),
                "the supervisor's answer",
                self.rt,
            )
        except RunError as exc:
            return {
                "draft": "The supervisor is unavailable and no specialist covers this question.",
                "calls": [sup.failed_record(exc, "answer")],
                "notes": [f"the supervisor could not answer: {exc}"],
            }
        return {"draft": text, "calls": calls}

    async def finish(self, state: TandemState) -> dict[str, Any]:
        guard = state["guard"]
        results = list(state.get("results") or [])
        text = privacy.final_text(self.rt, state)
        citations: list[Citation] = []
        for r in results:
            if r.status == "ok":
                citations.extend(c for c in r.citations if c not in citations)
        answer = Answer(
            text=text,
            route=state["route"],
            citations=citations,
            worker_results=results,
            ledger=privacy.run_ledger(self.rt, state),
            escalated=bool(state.get("escalated")),
            notes=list(dict.fromkeys(state.get("notes") or [])),  # a store error only once
            privacy=guard,
        )
        limit = self.rt.config.reliability.max_thread_messages
        drop, trimmed = reliability.trim_thread(state.get("messages") or [], limit)
        if trimmed:
            answer.notes.append(trimmed)
        return {
            "answer": answer,
            "messages": [*drop, HumanMessage(state["query"]), AIMessage(text)],
        }


def _node(fn: Callable[[Any], Coroutine[Any, Any, dict[str, Any]]]) -> RunnableLambda[Any, Any]:
    """A node usable from ``invoke`` (sync) and ``ainvoke``/``astream`` (async)."""

    fn = privacy.collect(fn)

    def sync(state: Any, config: RunnableConfig) -> dict[str, Any]:
        return run_sync(fn(state), contextvars.copy_context())

    async def afn(state: Any, config: RunnableConfig) -> dict[str, Any]:
        return await fn(state)

    return RunnableLambda(sync, afunc=afn, name=fn.__name__)


def build_graph(
    config: TandemConfig | None = None,
    *,
    checkpointer: Any = None,
    supervisor: Any = None,
    workers: Sequence[Any] = (),
    runtime: Runtime | None = None,
) -> Any:
    """Build the compiled hybrid graph.

    Args:
        config: Settings (default: :func:`~tandem.graphs.load_config`).
        checkpointer: Any LangGraph checkpointer (threads, resume).
        supervisor: A LangChain ``BaseChatModel`` (or SupervisorLLM) replacing the configured one.
        workers: Extra in-code :class:`~tandem.workers.WorkerSpec` s.
        runtime: A prebuilt runtime (shares backends/stores between graphs).

    Returns:
        A compiled LangGraph graph: input ``{"query": str}``, output state with ``answer``.
    """
    rt = runtime or Runtime(config, supervisor=supervisor, workers=workers)
    n = _Nodes(rt)
    g: StateGraph[Any] = StateGraph(TandemState)
    g.add_node("guard", _node(n.guard))
    g.add_node("route", _node(n.route))
    # input_schema: checkpoints of pending Sends (WorkerInput → Subtask) must deserialize
    # under strict msgpack, or a run killed mid fan-out could not resume.
    g.add_node("worker", _node(n.worker), input_schema=WorkerInput)
    g.add_node("check", _node(n.check))
    g.add_node("plan", _node(n.plan))
    g.add_node("synthesize", _node(n.synthesize))
    g.add_node("supervisor", _node(n.supervisor))
    g.add_node("finish", _node(n.finish))
    g.add_edge(START, "guard")
    g.add_edge("guard", "route")
    g.add_conditional_edges("route", n.after_route, ["worker", "plan", "supervisor"])
    g.add_conditional_edges("worker", n.after_worker, ["check", "synthesize"])
    g.add_conditional_edges("check", n.after_check, ["plan", "finish"])
    g.add_conditional_edges("plan", n.after_plan, ["worker", "synthesize"])
    g.add_edge("synthesize", "finish")
    g.add_edge("supervisor", "finish")
    g.add_edge("finish", END)
    compiled = g.compile(checkpointer=checkpointer, name="tandem")
    graph = compiled.with_config(
        recursion_limit=rt.config.recursion_limit,
        # With a checkpointer, every finished step is on disk before the next starts, so a
        # run killed mid-way resumes without redoing finished model calls.
        configurable={CONFIG_KEY_DURABILITY: "sync"} if checkpointer is not None else {},
    )
    graph.runtime = rt  # type: ignore[attr-defined]  # with_config returns a copy
    return graph
