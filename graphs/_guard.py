"""The privacy guard inside the graph: one :class:`StepGuard` per node execution.

Budgets, redaction, ``ask`` approval and the egress audit belong to
:mod:`tandem.agents.privacy` (:class:`~tandem.agents.privacy.GuardedLLM` and its
:class:`~tandem.agents.privacy.GuardScope`) and :mod:`tandem.agents.cost`
(:class:`~tandem.agents.cost.RunBudget`). This module only wires them to a run: it builds
a node's scope from the :class:`~tandem.graphs.runtime.Runtime` and the state — the
``ask`` approval is LangGraph's ``interrupt``, the thread id comes from the run's config —
and turns what the guard decided (egress records, a refusal, a budget stop, values found
in passages, new placeholders) into the node's state update (:meth:`StepGuard.update`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from langgraph.types import interrupt

from tandem.agents.cost import RunBudget
from tandem.agents.llm import SupervisorLLM
from tandem.agents.privacy import (
    EgressAudit,
    GuardedLLM,
    GuardScope,
    NoEgressLLM,
    Redactor,
    detector_for,
    egress_log_path,
)
from tandem.agents.privacy.policy import (
    answer_text,
    detect_query,
    passage_findings,
    prepare_outbound,
    run_redactor,
)
from tandem.agents.supervisor import Supervisor
from tandem.graphs._egress import thread_id
from tandem.graphs.ledger import Ledger, build_ledger
from tandem.graphs.runtime import Runtime
from tandem.workers.records import WorkerResult

__all__ = [
    "NEW_TURN",
    "StepGuard",
    "final_text",
    "private_workers",
    "run_ledger",
    "thread_id",
    "timed_detect",
]

NEW_TURN: dict[str, Any] = {
    "egress": None,
    "egress_denied": False,
    "budget_stop": "",
    "no_answer": False,
}
"""State a new turn resets (the guard node returns it). ``held`` stays for the thread: a later
turn's history may quote values found in an earlier turn's passages."""


def private_workers(rt: Runtime) -> set[str]:
    """Workers whose passages never leave the machine (``sensitivity = "local_only"``)."""
    return {n for n, s in rt.specs.items() if getattr(s, "sensitivity", "normal") == "local_only"}


def _local_llm(rt: Runtime) -> SupervisorLLM:
    llm = rt.local_supervisor().llm
    return NoEgressLLM(llm.model) if llm.where == "remote" else llm


class StepGuard:
    """The privacy guard for one execution of one node.

    Args:
        rt: The runtime.
        state: The node's input (the graph state, or a worker's ``Send`` payload).
    """

    def __init__(self, rt: Runtime, state: Mapping[str, Any]) -> None:
        self.rt = rt
        self.state = state
        self.held: list[tuple[str, str, str]] = []
        self._scope: GuardScope | None = None

    def _make_redactor(self) -> Redactor:
        guard = self.state.get("guard")
        return run_redactor(
            guard.mapping if guard else {},
            self.state.get("held") or [],
            policy=guard.policy if guard else None,
            detector=detector_for(self.rt.config.privacy),
            private_workers=private_workers(self.rt),
        )

    def scope(self) -> GuardScope:
        """The guard's collaborators for this step (built once)."""
        if self._scope is None:
            rt, guard = self.rt, self.state["guard"]
            privacy = rt.config.privacy
            self._scope = GuardScope(
                policy=guard.policy,
                settings=privacy,
                budget=RunBudget.from_calls(rt.config.cost, self.state.get("calls") or []),
                audit=EgressAudit(
                    egress_log_path(rt.config.data_dir),
                    policy=guard.policy,
                    thread_id=thread_id(),
                    keep_payloads=privacy.audit_payloads,
                ),
                approve=interrupt,
                local_llm=lambda: _local_llm(rt),
                make_redactor=self._make_redactor,
                mapping=guard.mapping,
                refused_earlier=bool(self.state.get("egress_denied")),
            )
        return self._scope

    def supervisor(self) -> Supervisor:
        """The supervisor this node may use, its model wrapped in :class:`GuardedLLM`."""
        policy = self.state["guard"].policy
        sup = self.rt.supervisor_for(policy)
        llm: SupervisorLLM = sup.llm
        if policy == "local_only" and llm.where == "remote":
            # Never send under local_only, whatever the supervisor configuration says.
            llm = NoEgressLLM(llm.model)
        elif self.state.get("egress_denied") and llm.where == "remote":
            llm = _local_llm(self.rt)
        return Supervisor(
            GuardedLLM(llm, self.scope()), max_subtasks=sup.max_subtasks, retry=sup.retry
        )

    def outbound(
        self, sup: Supervisor, query: str, history: str, results: Sequence[WorkerResult]
    ) -> tuple[Redactor | None, str, str, list[WorkerResult]]:
        """Query, history and worker results as ``sup`` may see them (redacted if remote)."""
        remote = sup.llm.where == "remote"
        redactor = self.scope().redactor() if remote else None
        query, history, shown = prepare_outbound(
            query,
            history,
            results,
            remote=remote,
            policy=self.state["guard"].policy if remote else "allow",
            redactor=redactor,
            private_workers=private_workers(self.rt),
            allowed_link_hosts=self.rt.config.privacy.allowed_link_hosts,
        )
        return redactor, query, history, shown

    def note_passages(self, worker: str, passages: Sequence[Document]) -> None:
        """Scan a worker's retrieved passages; values found are redacted wherever they reappear."""
        spec = self.rt.specs.get(worker)
        sensitive = getattr(spec, "sensitivity", "normal") == "local_only"
        if not (self.rt.config.privacy.scan_passages or sensitive) or not self.rt.scans():
            return
        detector = detector_for(self.rt.config.privacy)
        for item in passage_findings(detector, worker, passages):
            if item not in self.held:
                self.held.append(item)

    def update(self, result: dict[str, Any]) -> dict[str, Any]:
        """``result`` (the node's own update) with what the guard decided merged in."""
        extra: dict[str, Any] = {}
        scope = self._scope
        if scope is not None and scope.audit.records:
            extra["egress"] = scope.audit.records
        if self.held:
            extra["held"] = [list(h) for h in self.held]
        if scope is not None and scope.notes:
            extra["notes"] = [*(result.get("notes") or []), *scope.notes]
        if scope is not None and scope.refused:
            extra["egress_denied"] = True
        if scope is not None and scope.budget.stop_reason:
            extra["budget_stop"] = scope.budget.stop_reason
        guard = self.state.get("guard")
        redactor = scope.redactor_built if scope is not None else None
        if (
            redactor is not None
            and guard is not None
            and "guard" not in result  # the node set its own guard (a new turn)
            and redactor.mapping != guard.mapping
        ):
            extra["guard"] = guard.model_copy(update={"mapping": dict(redactor.mapping)})
        return {**result, **extra}


def final_text(rt: Runtime, state: Mapping[str, Any]) -> str:
    """The draft with placeholders restored locally, links neutralised, budget stop stated."""
    return answer_text(
        state.get("draft") or "",
        state["guard"].mapping,
        rt.config.privacy.allowed_link_hosts,
        state.get("budget_stop") or "",
    )


def run_ledger(rt: Runtime, state: Mapping[str, Any]) -> Ledger:
    """The run's ledger: calls, egress records, and the all-supervisor counterfactual."""
    plan = state.get("plan") if state.get("phase") == "planned" else None
    return build_ledger(
        state.get("calls") or [],
        egress=state.get("egress") or [],
        supervisor_model=rt.supervisor.llm.model,
        prices=rt.config.cost.prices,
        planned_by=plan.source if plan is not None else None,
        plan_rationale=plan.rationale if plan is not None else "",
    )


def timed_detect(rt: Runtime, text: str) -> tuple[Redactor, str, dict[str, int], float]:
    """Redact ``text`` with the configured detector; also returns counts and milliseconds."""
    return detect_query(detector_for(rt.config.privacy), text)
