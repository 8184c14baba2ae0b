"""A session: one compiled graph, one conversation thread at a time, and what happened so far.

:class:`Session` is the library's conversational API. ``tandem ask``, ``tandem demo`` and
the REPL (``tandem chat``) all answer through :meth:`Session.ask`, which streams a run and
hands its ``custom`` events (``{"event": "token", "text": …}``, ``{"event": "reset", …}``)
to a callback; the REPL's slash commands read or change a session, so each is testable
without a terminal::

    async with open_checkpointer(config) as saver:
        session = Session(build_graph(config, checkpointer=saver), saver)
        answer = await session.ask("How much notice must my landlord give?", print_event)
        print(session.ledger().totals, session.savings())
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command

from tandem.agents.cost import Savings, savings
from tandem.agents.privacy import EgressRequest, egress_log_path
from tandem.agents.router import RouteDecision
from tandem.graphs._stream import STREAM_DRAFTS
from tandem.graphs.checkpoint import list_threads
from tandem.graphs.hybrid import TandemGraph
from tandem.graphs.learning import LearningReport
from tandem.graphs.ledger import Ledger, build_ledger
from tandem.graphs.nodes import check_text
from tandem.graphs.runtime import Runtime
from tandem.graphs.state import Answer, TandemState
from tandem.workers.backends import make_backend
from tandem.workers.errors import ConfigError, RunError, UsageError
from tandem.workers.records import CallRecord, WorkerResult
from tandem.workers.spec import parse_model_ref
from tandem.workers.store import IngestReport

__all__ = [
    "ApprovalRequired",
    "Approver",
    "EventSink",
    "NodeTiming",
    "Pending",
    "RunTrace",
    "Session",
    "SessionPrivacy",
    "ThreadInfo",
    "new_thread_id",
]

EventSink = Callable[[dict[str, Any]], None]
"""Receives the run's events: the ``custom`` ones the nodes send (``{"event": "token",
"text": …}``, ``{"event": "reset", …}``), ``{"event": "status", "text": "asking tenancy…"}``
whenever the run moves on to a new step and, as soon as the router has decided,
``{"event": "route", "route": RouteDecision}``."""

Approver = Callable[[EgressRequest], Awaitable[bool]]
"""Answers a ``[privacy] policy = "ask"`` prompt: ``True`` sends the payload."""

History = Sequence[tuple[Literal["user", "assistant"], str]]
"""Earlier turns as ``(role, text)``, oldest first."""


class ApprovalRequired(RunError):
    """The run paused for an egress approval (``[privacy] policy = "ask"``) and the session
    has no :attr:`Session.approve` callback to answer it.

    The paused run is in the thread's checkpoint: :meth:`Session.resume` with ``True``
    (send) or ``False`` (keep it local) continues it.

    Attributes:
        request: What would be sent, where, and why.
        thread_id: The paused thread.
    """

    retryable_default = False

    def __init__(self, request: EgressRequest, thread_id: str) -> None:
        self.request = request
        self.thread_id = thread_id
        super().__init__(
            f"the run is waiting for approval to send {request.get('bytes', 0)} bytes to "
            f"{request.get('model', 'the remote model')} ({request.get('purpose', '')})",
            hint=f"resume thread {thread_id} with the answer (True sends, False keeps it local)",
        )


@dataclass
class Pending:
    """A thread's run that has not finished: paused for approval, or stopped mid-way."""

    query: str
    """The question of that run."""
    approval: EgressRequest | None = None
    """Set when it waits for an egress approval (``ask``); else it was stopped (killed,
    cancelled, shut down) and :meth:`Session.resume` redoes only the unfinished steps."""


@dataclass
class NodeTiming:
    """One graph node of a run: when it started (seconds after the run began) and its length."""

    name: str
    start: float
    seconds: float = 0.0
    error: str = ""
    detail: str = ""
    """What the node worked on (a worker task: the worker's name)."""


@dataclass
class RunTrace:
    """The last run: its nodes and model calls with timings."""

    query: str
    nodes: list[NodeTiming] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False
    route: RouteDecision | None = None
    """The router's decision (probabilities, parts, reason), once the run routed."""
    results: list[WorkerResult] = field(default_factory=list)
    """The specialists' answers, with ``p_correct`` and its signals."""
    notes: list[str] = field(default_factory=list)
    """The answer's notes (why it escalated, what degraded)."""


@dataclass
class ThreadInfo:
    """A conversation stored in the checkpointer."""

    thread_id: str
    turns: int
    first_question: str


@dataclass
class SessionPrivacy:
    """The egress policy and what left the machine during a session."""

    policy: str
    """The ``[privacy]`` policy in force."""
    supervisor: str
    """The supervisor model."""
    supervisor_where: Literal["local", "remote"]
    """Where it runs."""
    remote_calls: list[CallRecord]
    """Every call that left the machine."""
    bytes_sent: int
    """Bytes those calls sent."""
    sensitive_found: dict[str, int]
    """Sensitive spans found in the questions, by type."""
    scanned: int
    """Questions scanned for sensitive spans (none when every model runs on this machine,
    unless ``[privacy] scan_local_runs``)."""
    redacted_sent: dict[str, int]
    """Placeholders sent instead of sensitive values, by type."""
    egress_log: str
    """The egress audit log (``tandem privacy log``)."""
    questions: int
    """Questions answered."""


class Session:
    """Answers questions on one compiled graph, in one conversation thread at a time.

    Args:
        graph: From :func:`~tandem.graphs.build_graph` (with a checkpointer for threads that
            persist; without one every question stands alone).
        saver: That checkpointer (to list and switch threads).
        thread_id: Resume this thread; default: a new one.
    """

    def __init__(
        self,
        graph: TandemGraph,
        saver: BaseCheckpointSaver[Any] | None = None,
        *,
        thread_id: str | None = None,
    ) -> None:
        self.graph = graph
        self.runtime: Runtime = graph.runtime
        self.saver = saver
        self.thread_id = thread_id or new_thread_id()
        self.calls: list[CallRecord] = []
        self.answers: list[Answer] = []
        self.last: RunTrace | None = None
        self.model_overrides: dict[str, tuple[str, str]] = {}
        self.approve: Approver | None = None
        """Answers ``[privacy] policy = "ask"`` prompts (an ``EgressRequest``): True sends."""

    # -- asking -------------------------------------------------------------------------
    @property
    def thread(self) -> dict[str, Any]:
        """The LangGraph config selecting this session's thread."""
        return {"configurable": {"thread_id": self.thread_id}}

    async def ask(
        self,
        query: str,
        on_event: EventSink | None = None,
        *,
        history: History = (),
        force_worker: str | None = None,
        drafts: bool = True,
    ) -> Answer:
        """Answer ``query`` in the current thread, passing stream events to ``on_event``.

        Cancelling the task stops the run; the trace records that it was cancelled.

        Args:
            query: The question.
            on_event: Receives the run's events (see :data:`EventSink`).
            history: Earlier turns to answer in the context of; they join the thread before
                the question (for a graph without a checkpointer they are the only context).
            force_worker: Skip routing: this specialist answers and is not escalated.
            drafts: Stream a direct answer's draft as the specialist writes it (token
                events with a ``worker``); ``False`` when the caller only shows final text:
                the specialist's model is then not asked to stream.

        Raises:
            ApprovalRequired: The run paused for an egress approval and :attr:`approve` is
                not set.
            TandemError: The run failed before producing an answer.
        """
        check_text(query)
        payload: TandemState = {"query": query, "force_worker": force_worker}
        if history:
            payload["messages"] = [
                HumanMessage(check_text(text)) if role == "user" else AIMessage(check_text(text))
                for role, text in history
            ]
        return await self._run(payload, query, on_event, drafts=drafts)

    async def resume(
        self,
        approve: bool | None = None,
        on_event: EventSink | None = None,
        *,
        drafts: bool = True,
    ) -> Answer:
        """Continue this thread's unfinished run (see :meth:`pending`).

        Args:
            approve: The answer to a pending egress approval (``True`` sends); ``None`` for
                a run that was stopped mid-way (it redoes only the steps that had not
                finished).
            on_event: Receives the run's events.
            drafts: As for :meth:`ask`.

        Raises:
            UsageError: Nothing to resume, or ``approve`` does not fit what is pending.
        """
        pending = await self.pending()
        if pending is None:
            raise UsageError(f"thread {self.thread_id} has no unfinished run to resume")
        if (approve is None) != (pending.approval is None):
            raise UsageError(
                f"thread {self.thread_id} "
                + ("waits for an egress approval" if approve is None else "waits for no approval"),
                hint="answer a pending approval with True/False; resume a stopped run with None",
            )
        payload: Command[Any] | None = None if approve is None else Command(resume=approve)
        return await self._run(payload, pending.query, on_event, drafts=drafts)

    async def pending(self) -> Pending | None:
        """This thread's unfinished run, if any (needs a checkpointer)."""
        if self.saver is None:
            return None
        state = await self.graph.aget_state(self.thread)  # type: ignore[arg-type]
        if not state.next:
            return None
        query = str((state.values or {}).get("query") or "")
        for interrupt in state.interrupts:
            value = getattr(interrupt, "value", None)
            if isinstance(value, dict) and value.get("kind") == "egress_approval":
                return Pending(query, value)  # type: ignore[arg-type]
        return Pending(query)

    async def _run(
        self,
        payload: TandemState | Command[Any] | None,
        query: str,
        on_event: EventSink | None,
        *,
        drafts: bool = True,
    ) -> Answer:
        trace = RunTrace(query=query)
        config: dict[str, Any] = self.thread
        if not drafts:
            config = {"configurable": {**config["configurable"], STREAM_DRAFTS: False}}
        # Token events only when someone listens (the custom stream costs ~1 ms a run).
        modes = ["custom", "values", "tasks"] if on_event is not None else ["values", "tasks"]
        self.last = trace
        started = time.perf_counter()
        open_nodes: dict[str, NodeTiming] = {}
        final: dict[str, Any] = {}
        try:
            while True:  # a None payload (the first time) continues a stopped run
                async for mode, chunk in self.graph.astream(
                    payload,
                    config,  # type: ignore[arg-type]
                    stream_mode=modes,
                    # "sync" with a checkpointer (a turn is on disk before the next one).
                    durability=self.graph.default_durability,
                ):
                    now = time.perf_counter() - started
                    if mode == "custom":
                        if on_event is not None and isinstance(chunk, dict):
                            on_event(chunk)
                    elif mode == "tasks":
                        _task_event(chunk, now, open_nodes, trace)
                        if on_event is not None:
                            _route_event(chunk, on_event)
                            status = _status(open_nodes)
                            if status:
                                on_event({"event": "status", "text": status})
                    elif mode == "values":
                        final = chunk
                        if isinstance(chunk, dict) and isinstance(
                            chunk.get("route"), RouteDecision
                        ):
                            trace.route = chunk["route"]
                payload = await self._resume(final)
                if payload is None:
                    break
        except BaseException:
            trace.cancelled = True
            trace.seconds = time.perf_counter() - started
            raise
        trace.seconds = time.perf_counter() - started
        answer = final.get("answer")
        if not isinstance(answer, Answer) or not any(n.name == "finish" for n in trace.nodes):
            interrupts = final.get("__interrupt__")
            request = getattr(interrupts[0], "value", None) if interrupts else None
            if isinstance(request, dict) and request.get("kind") == "egress_approval":
                raise ApprovalRequired(request, self.thread_id)  # type: ignore[arg-type]
            why = f"it paused: {interrupts}" if interrupts else "the run ended without an answer"
            raise RunError(why, hint="see /trace for the nodes that ran")
        trace.calls = list(answer.ledger.calls)
        trace.results = list(answer.worker_results)
        trace.notes = list(answer.notes)
        self.calls.extend(answer.ledger.calls)
        self.answers.append(answer)
        return answer

    async def _resume(self, final: Mapping[str, Any]) -> Command[Any] | None:
        """The ``Command`` answering an egress-approval pause (``ask`` policy), else None."""
        pending = final.get("__interrupt__") or ()
        value = getattr(pending[0], "value", None) if pending else None
        if self.approve is None or not isinstance(value, dict):
            return None
        if value.get("kind") != "egress_approval":
            return None
        request: EgressRequest = value  # type: ignore[assignment]
        return Command(resume=bool(await self.approve(request)))

    async def route(self, query: str) -> RouteDecision:
        """The routing decision for ``query`` without running anything else."""
        if not query.strip():
            raise UsageError("usage: /route QUESTION")
        decision, _ = await self.runtime.router.decide(query.strip())
        return decision

    # -- learning ------------------------------------------------------------------------
    def _last_learning(self) -> LearningReport:
        if not self.answers:
            raise UsageError("no answer yet in this session")
        return self.answers[-1].learning

    async def keep(self) -> list[int]:
        """Keep the last answer's learning records as answer memory (the REPL's ``/keep``).

        Returns:
            The record ids kept (their passages are ``learned:<id>``).

        Raises:
            UsageError: No answer yet, or the last one left nothing to keep.
        """
        report = self._last_learning()
        ids = [r for r in report.records if r not in report.kept]
        if not ids:
            why = "already kept" if report.kept else "no specialist needed the supervisor"
            raise UsageError(f"the last answer left nothing to keep ({why})")
        kept = await self.runtime.learning.keep(ids)
        report.kept = [*report.kept, *kept]
        report.pending = [r for r in report.pending if r not in kept]
        return kept

    async def drop(self) -> list[int]:
        """Refuse the last answer's learning records as memory (the REPL's ``/drop``)."""
        report = self._last_learning()
        if not report.records:
            raise UsageError("the last answer left nothing to drop")
        dropped = await self.runtime.learning.drop(report.records)
        report.kept, report.pending = [], []
        return dropped

    # -- accounting ---------------------------------------------------------------------
    def ledger(self) -> Ledger:
        """Every model call of this session and their totals."""
        return build_ledger(self.calls)

    def savings(self) -> Savings:
        """What this session saved against sending every call to the supervisor model."""
        sup = self.runtime.supervisor.llm
        return savings(
            self.calls,
            sup.model,
            self.runtime.config.cost.prices,
            supervisor_where=sup.where,
        )

    def privacy(self) -> SessionPrivacy:
        """The egress policy and what left the machine this session."""
        rt = self.runtime
        remote = [c for c in self.calls if c.where == "remote"]
        findings: dict[str, int] = {}
        redacted: dict[str, int] = {}
        for answer in self.answers:
            for kind, n in answer.privacy.findings.items():
                findings[kind] = findings.get(kind, 0) + n
            for kind, n in answer.ledger.egress.redacted.items():
                redacted[kind] = redacted.get(kind, 0) + n
        return SessionPrivacy(
            policy=rt.config.privacy.policy,
            supervisor=rt.supervisor.llm.model,
            supervisor_where=rt.supervisor.llm.where,
            remote_calls=remote,
            bytes_sent=sum(c.bytes_sent for c in remote),
            sensitive_found=findings,
            scanned=sum(1 for a in self.answers if a.privacy.scanned),
            redacted_sent=redacted,
            egress_log=str(egress_log_path(rt.config.data_dir)),
            questions=len(self.answers),
        )

    # -- threads -------------------------------------------------------------------------
    def _saver(self) -> BaseCheckpointSaver[Any]:
        if self.saver is None:
            raise UsageError("this session has no checkpointer, so it keeps no threads")
        return self.saver

    async def threads(self, limit: int = 20) -> list[ThreadInfo]:
        """Threads in the checkpointer, most recent first."""
        out = []
        for tid in await list_threads(self._saver(), limit):
            out.append(await self.thread_info(tid))
        return out

    async def thread_info(self, thread_id: str) -> ThreadInfo:
        """Turns and first question of a thread (0 turns if it does not exist)."""
        state = await self.graph.aget_state({"configurable": {"thread_id": thread_id}})
        messages = list((state.values or {}).get("messages") or [])
        first = " ".join(str(messages[0].content).split()) if messages else ""
        return ThreadInfo(thread_id, len(messages) // 2, first)

    def new_thread(self) -> str:
        """Start a fresh conversation."""
        self.thread_id = new_thread_id()
        return self.thread_id

    async def switch(self, thread_id: str) -> ThreadInfo:
        """Continue an existing thread (a unique prefix of its id is enough).

        Raises:
            UsageError: No thread (or more than one) matches.
        """
        known = await list_threads(self._saver(), 1000)
        matches = [t for t in known if t == thread_id] or [
            t for t in known if t.startswith(thread_id)
        ]
        if len(matches) != 1:
            what = "no thread" if not matches else f"{len(matches)} threads"
            raise UsageError(f"{what} matching '{thread_id}'", hint="see /thread list")
        self.thread_id = matches[0]
        return await self.thread_info(matches[0])

    # -- workers ---------------------------------------------------------------------------
    def set_model(self, worker: str, model: str) -> str:
        """Swap ``worker``'s model for this session; returns the previous model.

        Raises:
            UsageError: Unknown worker or not a model reference.
        """
        rt = self.runtime
        if worker not in rt.workers:
            raise UsageError(f"no worker named '{worker}'; known: {', '.join(rt.workers)}")
        try:
            parse_model_ref(model)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            backend = make_backend(model, rt.backend_settings, worker=worker)
            # The new endpoint is classified like the configured ones (and refused alike).
            rt.check_backend(f"worker {worker}", model, backend, rt.specs[worker])
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        previous = str(rt.specs[worker].model)
        rt.workers[worker].backend = backend
        rt.specs[worker] = rt.specs[worker].model_copy(update={"model": model})
        rt.workers[worker].spec = rt.specs[worker]
        self.model_overrides[worker] = (previous, model)
        return previous

    async def ingest(
        self,
        worker: str,
        paths: Sequence[Path],
        progress: Callable[[int, int, str], None] | None = None,
    ) -> IngestReport:
        """Add files to ``worker``'s store.

        Raises:
            UsageError: Unknown worker.
        """
        stores = self.runtime.stores
        if worker not in stores:
            raise UsageError(f"no worker named '{worker}'; known: {', '.join(stores)}")
        return await stores[worker].ingest(paths, progress=progress)


def new_thread_id() -> str:
    """A short, unique, copyable thread id."""
    return uuid.uuid4().hex[:12]


_STATUS = {
    "guard": "checking the question…",
    "route": "routing…",
    "plan": "planning…",
    "synthesize": "writing the answer…",
    "supervisor": "asking the supervisor…",
}


def _status(open_nodes: Mapping[str, NodeTiming]) -> str:
    """What the run is doing now, in a few words (``asking tenancy, finance…``)."""
    workers = [n.detail for n in open_nodes.values() if n.name == "worker" and n.detail]
    if workers:
        return f"asking {', '.join(dict.fromkeys(workers))}…"
    running = [n.name for n in open_nodes.values() if n.name in _STATUS]
    return _STATUS[running[-1]] if running else ""


def _route_event(chunk: Any, on_event: EventSink) -> None:
    """``{"event": "route", …}`` when the ``route`` node has finished."""
    if not isinstance(chunk, dict) or chunk.get("name") != "route":
        return
    result = chunk.get("result")
    decision = result.get("route") if isinstance(result, dict) else None
    if isinstance(decision, RouteDecision):
        on_event({"event": "route", "route": decision})


def _task_event(chunk: Any, now: float, open_nodes: dict[str, NodeTiming], trace: RunTrace) -> None:
    if not isinstance(chunk, dict) or "name" not in chunk:
        return
    key = str(chunk.get("id", chunk["name"]))
    if "input" in chunk and "result" not in chunk:
        subtask = chunk["input"].get("subtask") if isinstance(chunk["input"], dict) else None
        detail = str(getattr(subtask, "worker", "") or "")
        timing = NodeTiming(name=str(chunk["name"]), start=now, detail=detail)
        open_nodes[key] = timing
        trace.nodes.append(timing)
        return
    timing = open_nodes.pop(key) if key in open_nodes else NodeTiming(str(chunk["name"]), now)
    timing.seconds = now - timing.start
    if chunk.get("error"):
        timing.error = str(chunk["error"])
