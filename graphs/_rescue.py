"""An escalated direct answer, answered by the supervisor from the specialist's passages.

The cascade (:mod:`tandem.graphs.cascade`) escalates a direct answer it cannot trust. With
``[cascade] escalation = "plan"`` the supervisor then plans, specialists answer the plan's
subtasks and the supervisor synthesizes — two supervisor calls and more specialist calls.
With ``answer`` (``auto`` picks it for the in-process engine, where every planning token
costs seconds) the supervisor answers the question itself, in one streamed call, from the
passages the specialist already retrieved, with the specialist's draft shown as
unreliable; its answer cites those passages. Only a supervisor on this machine is asked
this way (the passages would leave with the request otherwise); a remote one plans.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tandem.graphs._fallback import within
from tandem.graphs._guard import StepGuard
from tandem.graphs._stream import token_stream
from tandem.graphs.learning.recorder import COVERED
from tandem.graphs.runtime import Runtime
from tandem.graphs.state import SeenPassages, TandemState
from tandem.workers.errors import RunError
from tandem.workers.records import Citation, WorkerResult

__all__ = ["answers_escalations", "rescue"]

_CITE = re.compile(r"\[S(\d+)\]")


def answers_escalations(rt: Runtime, policy: str) -> bool:
    """Whether an escalated direct answer goes to the supervisor to answer from passages."""
    mode = rt.config.cascade.escalation
    llm = rt.supervisor_for(policy).llm
    if mode == "plan" or llm.where != "local":
        return False
    return mode == "answer" or llm.model.startswith("embedded:")


def _passages(state: TandemState, attempt: WorkerResult) -> list[Any]:
    seen: Sequence[SeenPassages] = state.get("seen") or []
    for s in reversed(seen):
        if s.worker == attempt.worker and s.instruction == attempt.instruction:
            return list(s.passages)
    return []


async def rescue(
    rt: Runtime, state: TandemState, step: StepGuard, *, history: str = ""
) -> dict[str, Any]:
    """The supervisor's answer to an escalated direct question (see the module doc)."""
    attempt = state["results"][-1]
    passages = _passages(state, attempt)
    sup = step.supervisor()
    shown = [(f"S{i}", p.source, p.text) for i, p in enumerate(passages, 1)]
    stream = token_stream(
        rt.config.privacy.allowed_link_hosts, lambda: step.scope().restore_mapping()
    )
    try:
        text, calls = await within(
            state.get("deadline"),
            sup.answer_from(
                state["query"],
                shown,
                attempt=attempt.answer if attempt.status == "ok" else "",
                history=history,
                on_token=stream,
            ),
            "the supervisor's answer",
            rt,
        )
        if stream is not None:
            stream.flush()
    except RunError as exc:
        kept = attempt.answer if attempt.status == "ok" and attempt.answer.strip() else ""
        return {
            "draft": kept
            or "No answer: the specialist's answer was not reliable and the "
            "supervisor could not be reached (see the notes).",
            "no_answer": not kept,
            "calls": [sup.failed_record(exc, "answer")],
            "notes": [
                f"the supervisor could not answer ({exc}); "
                + ("the specialist's unverified answer is shown" if kept else "no answer")
            ],
        }
    cited = sorted({int(n) for n in _CITE.findall(text) if 0 < int(n) <= len(passages)})
    citations = [
        Citation(worker=attempt.worker, source=passages[i - 1].source, chunk=passages[i - 1].chunk)
        for i in cited
    ]
    answer = WorkerResult(
        worker=attempt.worker,
        instruction=attempt.instruction,
        status="ok",
        answer=text,
        confidence=0.5,
        citations=list(dict.fromkeys(citations)),
        reason=f"{COVERED} from {attempt.worker}'s passages: its own answer was not reliable",
        grounded=bool(citations),
        model=sup.model,
    )
    return {
        "results": [answer],
        "draft": text,
        "calls": calls,
        "notes": [
            f"the supervisor answered from the {len(passages)} passages '{attempt.worker}' "
            "retrieved (no plan: [cascade] escalation)"
        ],
    }
