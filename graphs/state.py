"""The graph's state and the records a run returns."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field

from tandem.agents.privacy import EgressRecord, GuardReport
from tandem.agents.router import RouteDecision
from tandem.agents.supervisor import Plan
from tandem.graphs.learning.records import LearnedPassage, LearningReport
from tandem.graphs.ledger import Ledger
from tandem.workers.records import CallRecord, Citation, Subtask, WorkerResult

__all__ = ["Answer", "SeenPassages", "TandemState", "WorkerInput", "accumulate"]


def accumulate(left: list[Any] | None, right: list[Any] | None) -> list[Any]:
    """List reducer that a node can reset by writing ``None`` (each new turn does)."""
    if right is None:
        return []
    return [*(left or []), *right]


class Answer(BaseModel):
    """The final result of a run (``state["answer"]``)."""

    text: str
    """The answer, with sensitive values restored locally."""
    route: RouteDecision
    """How the query was routed (after any escalation the kind stays the router's)."""
    citations: list[Citation] = Field(default_factory=list)
    """Passages the answer rests on, by worker and source."""
    worker_results: list[WorkerResult] = Field(default_factory=list)
    """Every worker result of the run, including failed ones."""
    ledger: Ledger = Field(default_factory=Ledger)
    """Model calls, tokens, seconds, cost, local share and egress."""
    escalated: bool = False
    """True when a direct answer was not confident and the supervisor took over."""
    notes: list[str] = Field(default_factory=list)
    """What degraded or was repaired (failed workers, trimmed plans, fallbacks)."""
    privacy: GuardReport = Field(default_factory=GuardReport)
    """What the guard found and the egress policy applied."""
    learning: LearningReport = Field(default_factory=LearningReport)
    """Learning records this run wrote, whether they became answer memory, and the learned
    passages the answer rests on."""
    status: Literal["complete", "partial", "unanswered"] = "complete"
    """``complete``: every part was answered by a model; ``partial``: some part is missing
    (:attr:`missing`); ``unanswered``: no model produced an answer (the text says so)."""
    missing: list[str] = Field(default_factory=list)
    """The parts of the question that no model answered (question and specialist)."""


class SeenPassages(BaseModel):
    """The passages one worker saw for one subtask (a learning record keeps them)."""

    worker: str
    instruction: str
    passages: list[LearnedPassage] = Field(default_factory=list)


class TandemState(TypedDict, total=False):
    """LangGraph state. Input: ``{"query": str}`` (optionally ``force_worker``, and earlier
    ``messages`` when no checkpointer keeps the thread); output adds ``answer``."""

    query: str
    force_worker: str | None
    """Skip routing: this specialist answers, and is not escalated (``tandem serve``'s
    ``tandem/<worker>`` models). Reset at the end of every turn."""
    messages: Annotated[list[AnyMessage], add_messages]
    guard: GuardReport
    route: RouteDecision
    query_vector: list[float] | None
    phase: Literal["direct", "planned"]
    plan: Plan
    escalated: bool
    draft: str
    results: Annotated[list[WorkerResult], accumulate]
    calls: Annotated[list[CallRecord], accumulate]
    notes: Annotated[list[str], accumulate]
    seen: Annotated[list[SeenPassages], accumulate]
    """Passages each worker saw this turn (kept by learning records; reset every turn)."""
    egress: Annotated[list[EgressRecord], accumulate]
    """This run's remote calls, as the egress log recorded them."""
    held: Annotated[list[list[str]], accumulate]
    """``[entity, value, worker]`` found in retrieved passages (redacted if they reappear)."""
    egress_denied: bool
    """The user refused a remote call at an ``ask`` prompt: the rest of the run stays local."""
    no_answer: bool
    """The draft is not a model's answer (every model that could answer failed)."""
    budget_stop: str
    """Why a per-run budget stopped escalation (empty when none did)."""
    deadline: float | None
    """When this run must end (epoch seconds, ``[reliability] deadline``), or ``None``."""
    answer: Answer


class WorkerInput(TypedDict):
    """What ``Send("worker", …)`` carries to one worker task."""

    subtask: Subtask
    query_vector: list[float] | None
    phase: Literal["direct", "planned"]
    deadline: NotRequired[float | None]
    """When the run must end (epoch seconds), see ``TandemState.deadline``."""
