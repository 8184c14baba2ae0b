"""The hybrid graph's nodes: what each step of a run does (wired in :mod:`.hybrid`).

Every node receives the state (a worker, its ``Send`` payload) and the privacy guard of
this step (:class:`~tandem.graphs._guard.StepGuard`), which hands out the guarded
supervisor and prepares what may leave the machine; what the guard decided is merged into
the node's update by the wiring. Failures degrade the answer (its ``notes``), never crash
the run: the fallbacks and the deadline are :mod:`._fallback`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.types import Send

from tandem.agents.coverage import parts_in_order
from tandem.agents.planner import router_plan, synthesis_style
from tandem.agents.privacy import GuardReport, restore
from tandem.agents.privacy.policy import LOCAL_ONLY_KEY, merge_local
from tandem.agents.router import RouteDecision
from tandem.agents.supervisor import Plan, PlanStep, subtasks_from_plan
from tandem.graphs._fallback import (
    deadline_at,
    escalate_failed,
    local_synthesis,
    missing_parts,
    run_worker,
    trim_thread,
    within,
)
from tandem.graphs._followup import context_query, route_follow_up
from tandem.graphs._guard import (
    NEW_TURN,
    StepGuard,
    final_text,
    private_workers,
    run_ledger,
    thread_id,
    timed_detect,
)
from tandem.graphs._memory_answer import memory_answer
from tandem.graphs._rescue import answers_escalations, recheck_parts, rescue, rescue_parts
from tandem.graphs._stream import answer_sink, emit, token_stream
from tandem.graphs._synthesis import Synthesis, cited, in_context, kept_citations
from tandem.graphs.cascade import decide, trusted_memory
from tandem.graphs.learning import LearnedPassage
from tandem.graphs.runtime import Runtime, empty_workers
from tandem.graphs.state import Answer, SeenPassages, TandemState, WorkerInput
from tandem.workers.errors import RunError, StoreError, UsageError
from tandem.workers.records import CallRecord, Subtask, WorkerResult

__all__ = ["Nodes"]


def check_text(text: str) -> str:
    """``text`` if it can be encoded as UTF-8 (no lone surrogates, e.g. from invalid bytes).

    Raises:
        UsageError: Naming the position, instead of a traceback deep in a model client.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(
            f"the query is not valid text: character {exc.start + 1} is not valid UTF-8 "
            f"({text[exc.start]!r})",
            hint="check the terminal's or file's encoding (tandem expects UTF-8)",
        ) from None
    return text


def _history(
    messages: Sequence[AnyMessage], *, remote: bool, limit: int = 6, width: int = 400
) -> str:
    """The last turns as text; for a remote model, turns that drew on a ``local_only``
    worker are replaced (their question may name, their answer quote, what never leaves)."""
    lines = []
    for m in list(messages)[-limit:]:
        who = "user" if isinstance(m, HumanMessage) else "assistant"
        if remote and m.additional_kwargs.get(LOCAL_ONLY_KEY):
            lines.append(f"{who}: (withheld: this turn used local-only knowledge)")
            continue
        text = " ".join(str(m.content).split())
        lines.append(f"{who}: {text[:width]}{'…' if len(text) > width else ''}")
    return "\n".join(lines)


def _seen(worker: str, instruction: str, passages: Sequence[Document]) -> SeenPassages:
    return SeenPassages(
        worker=worker,
        instruction=instruction,
        passages=[LearnedPassage.of(d) for d in passages],
    )


def _without_empty(
    decision: RouteDecision, empty: dict[str, str]
) -> tuple[RouteDecision, list[str]]:
    """The route without workers that have no knowledge (they would answer from nothing)."""
    skipped = [w for w in decision.workers if w in empty]
    if not skipped:
        return decision, []
    notes = [f"worker '{w}' has no knowledge ({empty[w]}); it was not asked" for w in skipped]
    left = [w for w in decision.workers if w not in empty]
    if decision.kind == "direct" or not left:
        why = f"{', '.join(skipped)} has no knowledge; the supervisor answers"
        return decision.model_copy(
            update={"kind": "supervisor", "workers": [], "best_match": False, "reason": why}
        ), notes
    return decision.model_copy(update={"workers": left}), notes


class Nodes:
    """The graph's nodes, bound to a :class:`Runtime`."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def guard(self, state: TandemState, step: StepGuard) -> dict[str, Any]:
        query = check_text(state.get("query") or "").strip()
        if not query:
            raise UsageError("the query is empty")
        forced = state.get("force_worker")
        if forced is not None and forced not in self.rt.specs:
            raise UsageError(
                f"no worker named '{forced}'; known: {', '.join(self.rt.specs)}",
                hint="force one of the configured workers (or none, to let the router decide)",
            )
        limit = self.rt.config.reliability.max_query_chars
        if len(query) > limit:
            raise UsageError(
                f"the query is {len(query)} characters; the limit is {limit}",
                hint="shorten it or ingest long material into a worker's store "
                "([reliability] max_query_chars)",
            )
        policy = self.rt.config.privacy.policy
        sup = self.rt.supervisor_for(policy)
        if self.rt.scans():
            redactor, redacted, counts, ms = timed_detect(self.rt, query)
            report = GuardReport(
                policy=policy,
                findings=counts,
                redacted_query=redacted,
                mapping=redactor.mapping,
                supervisor_where=sup.llm.where,
                detect_ms=ms,
            )
        else:  # every model is on this machine: nothing to redact, no detector to load
            report = GuardReport(
                policy=policy, redacted_query=query, supervisor_where="local", scanned=False
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
            "seen": None,
            "deadline": deadline_at(self.rt),
            **NEW_TURN,
        }

    async def route(self, state: TandemState, step: StepGuard) -> dict[str, Any]:
        forced = state.get("force_worker")
        if forced:
            decision = RouteDecision(
                kind="direct", workers=[forced], reason=f"forced: the caller asked for '{forced}'"
            )
            return {"route": decision, "query_vector": None, "phase": "direct"}
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
        decision, notes = _without_empty(decision, await empty_workers(self.rt))
        if decision.kind == "supervisor" or decision.best_match:
            decision = await self._memory_route(decision, vector)
        return {
            "route": decision,
            "query_vector": vector,
            "calls": calls,
            "phase": "direct",
            "notes": notes,
        }

    async def _memory_route(self, decision: RouteDecision, vector: Any) -> RouteDecision:
        """The router was unsure — it found no specialist, or took the best one alone below
        its threshold (``best_match``) — but a specialist holds a learned passage at least
        ``[learning] trust_memory_above`` close to the question: that specialist answers.
        (A best match that holds the closest learned passage itself is kept as it is.)"""
        try:
            found = await self.rt.learning.memory_route(vector)
        except Exception:  # answer memory is a shortcut, never a reason to fail the run
            return decision
        if found is None or found[0] in await empty_workers(self.rt):
            return decision
        worker, source, score = found
        if decision.kind == "direct" and decision.workers == [worker]:
            return decision
        return decision.model_copy(
            update={
                "kind": "direct",
                "workers": [worker],
                "best_match": False,
                "parts": [],
                "reason": f"answer memory: {source} of '{worker}' matches the question at "
                f"{score:.2f} ({decision.reason})",
            }
        )

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

    async def worker(self, data: WorkerInput, step: StepGuard) -> dict[str, Any]:
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
        allowed = self.rt.config.privacy.allowed_link_hosts
        sink = answer_sink(subtask.worker, allowed) if direct else None
        # Fallback model/host and the run deadline: graphs/_fallback.py.
        run, more = await run_worker(
            self.rt,
            worker,
            subtask,
            query_vector=data.get("query_vector"),
            on_token=sink,
            deadline=data.get("deadline"),
        )
        if sink is not None:
            sink.flush()
        notes.extend(more)
        step.note_passages(subtask.worker, run.passages)
        result = cited(run.result, run.passages)
        if result.status == "failed":
            notes.append(f"worker '{subtask.worker}' failed: {result.reason}")
        update: dict[str, Any] = {"results": [result], "calls": run.calls, "notes": notes}
        # What the worker saw: a learning record keeps it, and an escalated answer or a part
        # said to be not covered may be answered by the supervisor from the same passages
        # (graphs/_rescue.py).
        update["seen"] = [_seen(subtask.worker, subtask.instruction, run.passages)]
        return update

    def after_worker(self, state: TandemState) -> str:
        return "check" if state.get("phase") == "direct" else "synthesize"

    async def check(self, state: TandemState, step: StepGuard) -> dict[str, Any]:
        result = state["results"][-1]
        spec = self.rt.specs.get(result.worker)
        cascade = self.rt.cascade.get(result.worker)
        if spec is not None and result.model and result.model != spec.model:
            cascade = self.rt.cascade_for(spec, result.model)  # a fallback model answered
        why = decide(result, cascade, spec.min_confidence if spec else 0.5)
        if not why:
            return {"draft": result.answer, "escalated": False}
        memory = trusted_memory(result, self.rt.config.learning.trust_memory_above)
        if memory:  # an approved learned passage backs it: its risk is the passage's
            return {
                "draft": result.answer,
                "escalated": False,
                "notes": [f"'{result.worker}' {memory}; kept local although {why}"],
            }
        served = None if state.get("force_worker") else await memory_answer(self.rt, state, result)
        if served is not None:  # the remembered supervisor answer, not the large model again
            found, note = served
            route = state["route"]
            reason = f"{route.reason}; {found.citations[0].source} served from answer memory"
            emit({"event": "reset", "reason": f"from answer memory: {why}"})
            stream = token_stream(self.rt.config.privacy.allowed_link_hosts)
            if stream is not None:
                stream(found.answer)
                stream.flush()
            return {
                "draft": found.answer,
                "escalated": False,
                "results": [found],
                "route": route.model_copy(update={"reason": reason}),
                "notes": [f"{note} ({why})"],
            }
        if state.get("force_worker"):
            # The caller chose this specialist: its answer stands (or its failure is said).
            draft = result.answer or f"The '{result.worker}' specialist could not answer ({why})."
            return {
                "draft": draft,
                "escalated": False,
                "notes": [f"'{result.worker}' was not confident ({why}); not escalated: forced"],
            }
        emit({"event": "reset", "reason": f"escalated: {why}"})  # drop the streamed draft
        return {
            "escalated": True,
            "notes": [f"'{result.worker}' was not confident ({why}); escalated to the supervisor"],
        }

    def after_check(self, state: TandemState) -> str:
        if not state.get("escalated"):
            return "finish"
        return "rescue" if answers_escalations(self.rt, state["guard"].policy) else "plan"

    async def rescue(self, state: TandemState, step: StepGuard) -> dict[str, Any]:
        history = _history(state.get("messages") or [], remote=False)
        return await rescue(self.rt, state, step, history=history)

    async def plan(self, state: TandemState, step: StepGuard) -> dict[str, Any]:
        route = state["route"]
        if not state.get("escalated"):
            built = router_plan(
                route, route.workers, self.rt.config.planner, self.rt.config.max_subtasks
            )
            if built is not None:  # the router's parts are the plan: no planning call
                reason = f"{route.reason}; plan built from the router's parts (no planning call)"
                return {
                    "plan": built,
                    "route": route.model_copy(update={"reason": reason}),
                    "phase": "planned",
                }
        sup = step.supervisor()
        remote = sup.llm.where == "remote"
        redactor, query, history, prior = step.outbound(
            sup,
            state["query"],
            _history(state.get("messages") or [], remote=remote),
            state.get("results") or [],
        )
        empty = await empty_workers(self.rt)
        specs = [s for s in self.rt.specs.values() if s.name not in empty]
        try:
            plan, calls, notes = await within(
                state.get("deadline"),
                sup.plan(query, specs, prior=prior, history=history),
                "the supervisor's plan",
                self.rt,
            )
        except RunError as exc:
            route = state["route"]
            fallback = route.workers or (
                [n for n, p in route.probabilities.items() if p >= 0.5]
                if route.probabilities
                else [n for n, s in route.scores.items() if s >= self.rt.config.router.min_score]
            )
            plan = Plan(
                subtasks=[],
                rationale=f"supervisor unreachable; asked the router's workers: {fallback}",
            )
            plan.subtasks = [PlanStep(worker=w, instruction=state["query"]) for w in fallback]
            calls = [sup.failed_record(exc, "plan")]
            notes = [f"the supervisor could not plan ({exc}); used the router's workers"]
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
            for planned in plan.subtasks:
                planned.instruction = restore(planned.instruction, mapping)
        return {"plan": plan, "calls": calls, "notes": notes, "phase": "planned"}

    def after_plan(self, state: TandemState) -> Any:
        context = context_query(state)
        if state["plan"].source == "router" and context == state["query"]:
            # A router part is the user's own words: the whole question beside it only
            # leads a small model to answer the other parts (a follow-up keeps its context).
            context = ""
        subtasks = subtasks_from_plan(state["plan"], context)
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

    async def synthesize(self, state: TandemState, step: StepGuard) -> dict[str, Any]:
        sup = step.supervisor()
        deadline = state.get("deadline")
        remote = sup.llm.where == "remote"
        history = _history(state.get("messages") or [], remote=remote)
        # Failed subtasks go to the supervisor first (graphs/_fallback.py), as the privacy
        # guard prepares text for it; a local_only worker's part never leaves the machine.
        private = set() if not remote else private_workers(self.rt)
        # The plan's parts: an escalated direct attempt is not one (it is not re-asked).
        steps = state["plan"].subtasks
        planned = parts_in_order(steps, state.get("results") or [])
        added, calls, notes, down = await escalate_failed(
            self.rt,
            sup,
            [r for r in planned if r.worker not in private],
            redact=lambda text: step.outbound(sup, text, "", ())[1],
            history=step.outbound(sup, "", history, ())[2],
            deadline=deadline,
        )
        style = synthesis_style(self.rt.config.planner, sup.llm.model)
        answers = down is None and answers_escalations(self.rt, state["guard"].policy)
        if answers:  # a part its specialist said is not covered: a focused call (the
            # first [cascade] rescue_calls parts; a structured synthesis re-answers the rest)
            limit = self.rt.config.cascade.rescue_calls if style == "structured" else None
            rescued, made, said = await rescue_parts(
                self.rt, sup, state, planned, history=history, limit=limit
            )
            added, calls, notes = [*added, *rescued], [*calls, *made], [*notes, *said]
        local = parts_in_order(steps, [*planned, *added])
        if not remote:  # passage sentences stay on this machine
            local = in_context(state, local)
        update: dict[str, Any] = {"results": added, "calls": calls, "notes": notes}
        # A remote supervisor synthesizes the other parts; local_only parts join here.
        kept = [r for r in local if r.worker in private]
        stream = token_stream(
            self.rt.config.privacy.allowed_link_hosts, lambda: step.scope().restore_mapping()
        )
        if kept and all(r.worker in private for r in local):
            text = local_synthesis(local)
            update["no_answer"] = not any(r.status == "ok" for r in local)
            if stream is not None:
                stream(text)
                stream.flush()
            return {**update, "draft": text}
        synthesis = Synthesis(self.rt, sup, deadline, stream)
        try:
            if down is not None:
                raise down  # the supervisor is unreachable: do not wait for it a second time
            parts = [r for r in local if r.worker not in private]
            _, query, history, shown = step.outbound(sup, state["query"], history, parts)
            if style == "structured":
                # Parts answered with a low p_correct are re-answered from their passages
                # within the same call, and so are "not covered" parts not rescued above.
                recheck = recheck_parts(self.rt, state, parts) if answers else {}
                text, more, extra, own = await synthesis.structured(
                    query, history, parts, shown, recheck
                )
                update["results"] = [*added, *own]
            else:
                text, more, extra, _ = await synthesis.prose(query, history, parts, shown)
            if kept:
                merged = merge_local(text, kept)
                if stream is not None and merged != text:
                    stream(merged[len(text) :])
                text = merged
            if stream is not None:
                stream.flush()
        except RunError as exc:
            return {
                **update,
                "draft": local_synthesis(local),
                "no_answer": not any(r.status == "ok" for r in local),
                "calls": [*calls, *([] if exc is down else [sup.failed_record(exc, "synthesize")])],
                "notes": [
                    *notes,
                    f"the supervisor could not synthesize ({exc}); joined answers locally",
                ],
            }
        return {**update, "draft": text, "calls": [*calls, *more], "notes": [*notes, *extra]}

    async def supervisor(self, state: TandemState, step: StepGuard) -> dict[str, Any]:
        sup = step.supervisor()
        remote = sup.llm.where == "remote"
        _, query, history, _ = step.outbound(
            sup,
            state["query"],
            _history(state.get("messages") or [], remote=remote),
            state.get("results") or [],
        )
        stream = token_stream(
            self.rt.config.privacy.allowed_link_hosts, lambda: step.scope().restore_mapping()
        )
        try:
            text, calls = await within(
                state.get("deadline"),
                sup.answer(query, history=history, on_token=stream),
                "the supervisor's answer",
                self.rt,
            )
            if stream is not None:
                stream.flush()
        except RunError as exc:
            return {
                "draft": "No answer: the supervisor could not answer and no specialist "
                "covers this question (see the notes).",
                "no_answer": True,
                "calls": [sup.failed_record(exc, "answer")],
                "notes": [f"the supervisor could not answer: {exc}"],
            }
        return {"draft": text, "calls": calls}

    async def finish(self, state: TandemState, step: StepGuard) -> dict[str, Any]:
        guard = state["guard"]
        results = list(state.get("results") or [])
        text = final_text(self.rt, state)
        citations = kept_citations(state, text)
        # A planned answer is judged by the plan's parts (not an escalated direct attempt).
        plan = state.get("plan") if state.get("phase") == "planned" else None
        parts = parts_in_order(plan.subtasks, results) if plan is not None else results
        missing = missing_parts(parts)
        # No model answered: a failure text, or a synthesis of nothing but failed parts.
        no_answer = (
            bool(state.get("no_answer"))
            or not text.strip()
            or (bool(parts) and not any(r.status == "ok" for r in parts))
        )
        answer = Answer(
            text=text,
            status="unanswered" if no_answer else "partial" if missing else "complete",
            missing=missing,
            route=state["route"],
            citations=citations,
            worker_results=results,
            ledger=run_ledger(self.rt, state),
            escalated=bool(state.get("escalated")),
            notes=list(dict.fromkeys(state.get("notes") or [])),  # a store error only once
            privacy=guard,
        )
        try:  # what the supervisor supplied that a specialist could not: graphs/learning/
            answer.learning = await self.rt.learning.record_run(
                dict(state), text, thread_id=thread_id()
            )
        except Exception as exc:  # learning never costs the user the answer
            answer.notes.append(f"learning: this run was not recorded ({exc})")
        limit = self.rt.config.reliability.max_thread_messages
        drop, trimmed = trim_thread(state.get("messages") or [], limit)
        if trimmed:
            answer.notes.append(trimmed)
        # A turn that drew on a local_only worker is never shown to a remote model later.
        private = private_workers(self.rt)
        marks = (
            {LOCAL_ONLY_KEY: True}
            if any(r.worker in private and r.status == "ok" for r in results)
            else {}
        )
        return {
            "answer": answer,
            "messages": [
                *drop,
                HumanMessage(state["query"], additional_kwargs=marks),
                AIMessage(text, additional_kwargs=marks),
            ],
            "force_worker": None,  # a forced specialist is for one turn only
        }
