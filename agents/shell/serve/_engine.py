"""What the HTTP layer runs: a request as a :class:`~tandem.graphs.Session` turn.

Two graphs share one runtime: a request without a thread runs on a graph with no
checkpointer (the request's earlier messages are its context; nothing is stored), a request
with ``thread_id`` on the configured checkpointer (the thread's own messages are the
context; a run stopped mid-way resumes; an ``ask`` approval pauses there until answered).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver

from tandem.agents.router import RouteDecision
from tandem.agents.shell._doctor import diagnose
from tandem.agents.shell.serve._wire import WireError
from tandem.graphs import Answer, Runtime, Session, build_graph
from tandem.graphs.runtime import embedded_models
from tandem.graphs.session import ApprovalRequired

__all__ = ["Engine", "EventSink", "Outcome", "RunRequest", "SessionEngine"]

EventSink = Callable[[dict[str, Any]], None]
"""``{"event": "route", "route": {…}}``, ``{"event": "token", "text", "worker"?}``,
``{"event": "reset", "reason"}``."""


@dataclass
class RunRequest:
    """One chat-completions request, as tandem runs it."""

    query: str
    history: list[tuple[Literal["user", "assistant"], str]] = field(default_factory=list)
    thread_id: str | None = None
    worker: str | None = None
    approve: bool | None = None
    stream: bool = False
    """The client streams (token events are wanted); else only the answer counts."""


@dataclass
class Outcome:
    """A finished run (``answer``) or one paused for an egress approval (``approval``)."""

    answer: Answer | None = None
    approval: dict[str, Any] | None = None
    thread_id: str | None = None
    notes: list[str] = field(default_factory=list)
    """What the server did with the request that the answer's own notes do not say."""


class Engine:
    """The interface the app runs requests through (:class:`SessionEngine`, or a test stub)."""

    @property
    def workers(self) -> list[str]:
        """The specialists ``tandem/<worker>`` may name."""
        raise NotImplementedError

    def check(self, request: RunRequest) -> None:
        """Refuse, before a run slot is taken, what cannot be served (raises WireError)."""

    async def run(self, request: RunRequest, on_event: EventSink) -> Outcome:
        """Answer ``request``, passing stream events to ``on_event``."""
        raise NotImplementedError

    async def ready(self) -> dict[str, str]:
        """What is not ready, by component (empty: ready)."""
        return {}

    def run_deadline(self) -> float | None:
        """Seconds a run may take by its own settings (None: no limit)."""
        return None


_READY_TTL = 5.0


class SessionEngine(Engine):
    """Runs requests as :class:`~tandem.graphs.Session` turns on one runtime.

    Args:
        runtime: Backends, stores, workers, router and supervisors (shared by every request).
        saver: The checkpointer for threads (``None``: requests with ``thread_id`` are refused).
    """

    def __init__(self, runtime: Runtime, saver: BaseCheckpointSaver[Any] | None) -> None:
        self.runtime = runtime
        self.saver = saver
        self.stateless = build_graph(runtime=runtime)
        self.threaded = build_graph(runtime=runtime, checkpointer=saver) if saver else None
        self._ready: tuple[float, dict[str, str]] | None = None
        self._ready_lock = asyncio.Lock()
        # One run at a time per thread: a second request on a busy thread waits its turn.
        self._threads: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @property
    def workers(self) -> list[str]:
        return list(self.runtime.specs)

    def _needs_approval(self) -> bool:
        """``ask`` with a supervisor off this machine: a run may pause for the user."""
        rt = self.runtime
        return rt.config.privacy.policy == "ask" and rt.supervisor.llm.where == "remote"

    def check(self, request: RunRequest) -> None:
        if request.thread_id is not None and self.threaded is None:
            raise WireError(
                400, "This server keeps no threads (no checkpointer).", param="thread_id"
            )
        if self._needs_approval() and request.thread_id is None:
            raise WireError(
                400,
                "The privacy policy is 'ask': a request to the remote supervisor waits for "
                "your approval, which over HTTP needs a thread to pause in. Send a "
                "'thread_id' and answer the approval the response asks for with "
                "'approve': true/false on the same thread (see the README), or run the "
                "server with [privacy] policy = redact, local_only or allow.",
                param="thread_id",
                code="approval_needs_thread",
            )

    async def run(self, request: RunRequest, on_event: EventSink) -> Outcome:
        def events(event: dict[str, Any]) -> None:
            route = event.get("route")
            if isinstance(route, RouteDecision):
                event = {**event, "route": route.model_dump(mode="json")}
            on_event(event)

        # A JSON response needs no token events: the run then skips the custom stream.
        sink: EventSink | None = events if request.stream else None
        if request.thread_id is None:
            session = Session(self.stateless)
            answer = await session.ask(
                request.query,
                sink,
                history=request.history,
                force_worker=request.worker,
                drafts=False,  # held back until it passed the confidence check anyway
            )
            return Outcome(answer=answer)
        assert self.threaded is not None  # check() refused it otherwise
        thread = request.thread_id
        session = Session(self.threaded, self.saver, thread_id=thread)
        lock = self._threads.get(thread)
        if lock is None:
            lock = self._threads[thread] = asyncio.Lock()
        outcome = Outcome(thread_id=thread)
        async with lock:
            try:
                outcome.answer = await self._threaded(session, request, sink, outcome.notes)
            except ApprovalRequired as exc:
                outcome.approval = dict(exc.request)
        return outcome

    async def _threaded(
        self, session: Session, request: RunRequest, events: EventSink | None, notes: list[str]
    ) -> Answer:
        pending = await session.pending()
        waiting = pending is not None and pending.approval is not None
        if request.approve is not None:
            if not waiting:
                raise WireError(
                    400,
                    f"Thread {session.thread_id} has no run waiting for an approval.",
                    param="approve",
                    code="no_pending_approval",
                )
            return await session.resume(request.approve, events, drafts=False)
        if waiting:
            raise WireError(
                400,
                f"Thread {session.thread_id} is waiting for an egress approval: send "
                "'approve': true (send it) or false (keep the run on this machine).",
                param="approve",
                code="approval_pending",
            )
        if pending is not None and pending.query == request.query:
            # The same question again on a thread whose run was stopped (a restart, a
            # dropped connection): it goes on from its last finished step.
            return await session.resume(None, events, drafts=False)
        info = await session.thread_info(session.thread_id)
        # A new thread starts from the request's earlier messages; an existing one has its own.
        history = request.history if info.turns == 0 else []
        if request.history and info.turns:
            notes.append(
                f"the request's {len(request.history)} earlier message(s) were not used: "
                f"thread {session.thread_id} has its own history ({info.turns} turns)"
            )
        return await session.ask(
            request.query, events, history=history, force_worker=request.worker, drafts=False
        )

    async def ready(self) -> dict[str, str]:
        async with self._ready_lock:
            now = time.monotonic()
            if self._ready is None or now - self._ready[0] > _READY_TTL:
                checks = await diagnose(self.runtime)
                problems = {c.what: c.fix for c in checks if not c.ok}
                self._ready = (now, problems)
            return dict(self._ready[1])

    def run_deadline(self) -> float | None:
        rel = self.runtime.config.reliability
        return rel.embedded_deadline if embedded_models(self.runtime) else rel.deadline
