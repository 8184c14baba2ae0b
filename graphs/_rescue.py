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

from collections.abc import Sequence
from typing import Any

from tandem.agents.coverage import is_answer
from tandem.agents.supervisor import Supervisor
from tandem.graphs._fallback import within
from tandem.graphs._guard import StepGuard
from tandem.graphs._recheck import passage_answer
from tandem.graphs._stream import TokenStream, token_stream
from tandem.graphs._synthesis import seen_passages
from tandem.graphs.learning.records import LearnedPassage
from tandem.graphs.runtime import Runtime
from tandem.graphs.state import TandemState
from tandem.workers.errors import RunError
from tandem.workers.records import CallRecord, WorkerResult

__all__ = ["answers_escalations", "recheck_parts", "rescue", "rescue_parts"]


def answers_escalations(rt: Runtime, policy: str) -> bool:
    """Whether an escalated direct answer goes to the supervisor to answer from passages."""
    mode = rt.config.cascade.escalation
    llm = rt.supervisor_for(policy).llm
    if mode == "plan" or llm.where != "local":
        return False
    return mode == "answer" or llm.model.startswith("embedded:")


def _shown(rt: Runtime, passages: Sequence[LearnedPassage]) -> list[LearnedPassage]:
    """The passages the supervisor is shown: best first as the specialist ranked them
    (embedding plus keyword score; answer memory by its embedding score), at most
    ``[cascade] rescue_passages``."""
    ranked = sorted(passages, key=lambda p: -p.order)
    return ranked[: rt.config.cascade.rescue_passages]


async def _from_passages(
    rt: Runtime,
    sup: Supervisor,
    state: TandemState,
    query: str,
    passages: Sequence[Any],
    worker_name: str,
    *,
    attempt: str = "",
    history: str = "",
    on_token: TokenStream | None = None,
) -> tuple[str, list[CallRecord]]:
    """The supervisor's answer to ``query`` from ``passages`` (those :func:`_shown` chose,
    cited ``[S1]`` …, with the sentences of them that match ``query`` best quoted again, as
    ``worker_name``'s own prompt has them), within the run's deadline, and the calls made.
    Raises :class:`RunError` when it cannot answer."""
    shown = [(f"S{i}", p.source, p.text) for i, p in enumerate(passages, 1)]
    calls: list[CallRecord] = []
    worker = rt.workers.get(worker_name)
    texts = [(p.source, p.text) for p in passages]
    hint = [] if worker is None else await worker.evidence(query, texts, calls)
    text, made = await within(
        state.get("deadline"),
        sup.answer_from(
            query,
            shown,
            attempt=attempt,
            history=history,
            on_token=on_token,
            evidence=[(f"S{i + 1}", sentence) for i, sentence in hint],
        ),
        "the supervisor's answer",
        rt,
    )
    return text, [*calls, *made]


async def rescue(
    rt: Runtime, state: TandemState, step: StepGuard, *, history: str = ""
) -> dict[str, Any]:
    """The supervisor's answer to an escalated direct question (see the module doc)."""
    attempt = state["results"][-1]
    passages = _shown(rt, seen_passages(state, attempt))
    sup = step.supervisor()
    stream = token_stream(
        rt.config.privacy.allowed_link_hosts,
        lambda: step.scope().restore_mapping(),
        marks=True,  # the answer's citations name its sources
    )
    try:
        text, calls = await _from_passages(
            rt,
            sup,
            state,
            state["query"],
            passages,
            attempt.worker,
            attempt=attempt.answer if attempt.status == "ok" else "",
            history=history,
            on_token=stream,
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
    answer = passage_answer(
        attempt, text, passages, state["query"], sup.model, "its own answer was not reliable"
    )
    return {
        "results": [answer],
        "draft": answer.answer,
        "calls": calls,
        "notes": [
            f"the supervisor answered from the {len(passages)} passages '{attempt.worker}' "
            "retrieved (no plan: [cascade] escalation)"
        ],
    }


async def rescue_parts(
    rt: Runtime,
    sup: Supervisor,
    state: TandemState,
    parts: Sequence[WorkerResult],
    *,
    history: str = "",
    limit: int | None = None,
) -> tuple[list[WorkerResult], list[CallRecord], list[str]]:
    """Planned parts a specialist answered "not covered" (or asked to escalate) although it
    retrieved passages, answered by the (local) supervisor from those passages — one call
    each, before the synthesis, so a part is not dropped only because a small model misread
    its passages. At most ``limit`` such calls (the first parts in plan order; ``None``: no
    limit): the parts left are re-answered within the structured synthesis call instead
    (:func:`recheck_parts`). Returns the new results, the calls and notes."""
    added: list[WorkerResult] = []
    calls: list[CallRecord] = []
    notes: list[str] = []
    for part in parts:
        if part.status != "ok" or is_answer(part):
            continue
        passages = _shown(rt, seen_passages(state, part))
        if not passages:
            continue
        if limit is not None and len(added) >= limit:
            continue  # re-answered within the synthesis call, which says so
        try:
            text, made = await _from_passages(
                rt, sup, state, part.instruction, passages, part.worker, history=history
            )
        except RunError as exc:
            calls.append(sup.failed_record(exc, "answer"))
            notes.append(f"could not ask the supervisor about '{part.worker}''s part: {exc}")
            break
        calls.extend(
            c.model_copy(update={"purpose": "rescue"}) if c.role == "supervisor" else c
            for c in made
        )
        # The part is shown as one paragraph of the answer, attributed to its specialist;
        # its passages are the answer's citations, not "[S2]" marks.
        why = "the specialist said it was not covered"
        added.append(passage_answer(part, text, passages, part.instruction, sup.model, why))
        notes.append(
            f"'{part.worker}' found its part not covered; the supervisor answered it from the "
            f"{len(passages)} passages it retrieved"
        )
    return added, calls, notes


def _weak(part: WorkerResult, below: float | None) -> bool:
    """A planned part whose specialist answer is not to be trusted as it is: a ``p_correct``
    under ``[cascade] recheck_below``, or "not covered" (or asked to escalate) — such a part
    is here only when it got no rescue call of its own (:func:`rescue_parts`: past
    ``[cascade] rescue_calls``, or the call could not be made)."""
    if part.status != "ok":
        return False  # a failed part is the supervisor's already (graphs/_fallback.py)
    if not is_answer(part):
        return True
    return below is not None and part.p_correct is not None and part.p_correct < below


def recheck_parts(
    rt: Runtime, state: TandemState, parts: Sequence[WorkerResult]
) -> dict[int, list[LearnedPassage]]:
    """The weak parts (index into ``parts``) that retrieved passages, with the passages the
    supervisor is shown (:func:`_shown`): a local supervisor answers them from those within
    the synthesis call (:meth:`~tandem.graphs._synthesis.Synthesis.structured`)."""
    below = rt.config.cascade.recheck_below
    out: dict[int, list[LearnedPassage]] = {}
    for i, part in enumerate(parts):
        if _weak(part, below):
            passages = _shown(rt, seen_passages(state, part))
            if passages:
                out[i] = passages
    return out
