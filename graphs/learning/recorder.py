"""From a finished run to learning records: which specialist the supervisor's text belongs to.

Attribution, from the run's final state:

* **escalated** — a direct answer the specialist was unsure of, taken over by the supervisor:
  the whole final answer belongs to that specialist (unless, after escalation, *another*
  specialist answered confidently: then the route was wrong, not the specialist's knowledge,
  and the run yields a routing example instead);
* **covered** — a failed subtask the supervisor answered itself: its answer, for that subtask;
* **planned** — a planned part whose specialist was unsure: the sentences of the synthesis
  that carry the specialist's ``[name]`` tag (the whole synthesis when it is the only
  specialist of the plan).

Of a structured answer (the specialists' answers as they are, then the supervisor's joint
conclusion) only the conclusion is the supervisor's text.

Each record also gets the ``auto`` checks (:func:`checks`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tandem.agents.coverage import answer_part
from tandem.agents.privacy import PLACEHOLDER, Redactor, restore
from tandem.graphs._followup import FOLLOW_UP, context_query
from tandem.graphs.learning.records import (
    Candidate,
    LearnedPassage,
    LearningSettings,
    Record,
    RecordKind,
)
from tandem.workers.memory import find_conflicts, is_learned
from tandem.workers.records import CallRecord, WorkerResult

__all__ = [
    "COVERED",
    "REFUSAL",
    "TAG",
    "Part",
    "attribute",
    "checks",
    "confident",
    "routing_candidate",
]

COVERED = "answered by the supervisor"
"""How a supervisor-covered subtask's result reason starts (graphs/_fallback.py)."""

REFUSAL = re.compile(
    r"\b(i (?:do not|don't|cannot|can't) (?:know|answer|help)|not covered|do not cover|"
    r"does not cover|cannot answer|"
    r"unable to (?:answer|help)|no specialist could|is unavailable|could not answer)\b",
    re.I,
)
PASSAGE_TALK = re.compile(
    r"^\W*(?:(?:according to|based on|from|in) )?(?:the|this|these) (?:provided |given |above )?"
    r"(?:passages?|sources?|documents?|texts?)\b",
    re.I,
)
"""An answer that opens by talking about "the passage": kept as a passage of its own it
would point at text the store does not hold (the bundled 1.5B's "The passage in states…")."""
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
TAG = re.compile(r"\s*\[[\w.-]+\]")
"""A ``[worker]`` citation tag in the supervisor's text."""


@dataclass
class Part:
    """The supervisor's text for one specialist's part of a run."""

    worker: str
    kind: RecordKind
    instruction: str
    text: str
    attempt: WorkerResult | None


def confident(result: WorkerResult, min_confidence: float) -> bool:
    """Whether a worker result stood on its own (as the graph's ``check`` node decides)."""
    if result.status != "ok" or result.needs_escalation:
        return False
    p = getattr(result, "p_correct", None)  # issue 15: calibrated, when the worker reports it
    score = float(p) if p is not None else result.confidence
    return score >= min_confidence


_SYNTHESES = ("synthesize", "resynthesize", "conclude")
"""Supervisor calls whose text makes the final answer: a prose synthesis (asked again when
it left a part out), or a structured answer's joint conclusion."""


def _synthesized(calls: Sequence[CallRecord]) -> CallRecord | None:
    """The supervisor call whose text is the final answer (a successful synthesis)."""
    done = [c for c in calls if c.role == "supervisor" and c.purpose in _SYNTHESES]
    return done[-1] if done and not done[-1].error else None


def _supervisors_text(text: str, synthesis: CallRecord, results: Sequence[WorkerResult]) -> str:
    """What of the final ``text`` the supervisor wrote: all of a prose synthesis; of a
    structured answer only its conclusion — the paragraphs before it are the specialists'
    own answers, shown as they were."""
    if synthesis.purpose != "conclude":
        return text
    own = {answer_part(r) for r in results}
    return "\n\n".join(p for p in text.split("\n\n") if p.strip() and p not in own).strip()


def _answered(calls: Sequence[CallRecord]) -> bool:
    """Whether the supervisor's own answer (no specialist involved) succeeded."""
    done = [c for c in calls if c.role == "supervisor" and c.purpose == "answer"]
    return bool(done) and not done[-1].error


def _tagged(text: str, worker: str) -> str:
    tag = f"[{worker}]".lower()
    sentences = [s.strip() for s in _SENTENCE.split(text) if s.strip()]
    return " ".join(s for s in sentences if tag in s.lower())


def attribute(
    state: dict[str, Any], text: str, thresholds: dict[str, float]
) -> tuple[list[Part], list[str]]:
    """The parts of a run's final ``text`` the supervisor supplied, per specialist.

    Args:
        state: The run's final graph state.
        text: The final answer (placeholders restored).
        thresholds: Each worker's ``min_confidence``.

    Returns:
        The parts, and the specialists that answered confidently after an escalation (a
        routing correction when they differ from the routed one).
    """
    route = state.get("route")
    if route is None or route.kind == "supervisor":
        return [], []
    results: list[WorkerResult] = list(state.get("results") or [])
    mapping = state["guard"].mapping if state.get("guard") else {}
    synthesis = _synthesized(state.get("calls") or [])
    if synthesis is not None:
        text = _supervisors_text(text, synthesis, results)
        if not text:  # a structured answer without a conclusion: the supervisor said nothing
            synthesis = None
    covered = {
        (r.worker, r.instruction): r
        for r in results
        if r.status == "ok" and r.reason.startswith(COVERED)
    }
    own = [r for r in results if not r.reason.startswith(COVERED)]

    def ok(r: WorkerResult) -> bool:
        return confident(r, thresholds.get(r.worker, 0.5))

    parts: list[Part] = []
    answered: list[str] = []
    escalated = route.kind == "direct" and bool(state.get("escalated")) and own
    if route.kind == "direct" and not escalated:
        return [], []  # the specialist answered on its own: nothing to learn
    planned = own[1:] if escalated else own
    for r in planned:
        if ok(r) and r.worker not in answered:
            answered.append(r.worker)
    if escalated:
        first = own[0]
        others = [w for w in answered if w != first.worker]
        if others and first.worker not in answered:
            return [], others  # a routing error, not a gap in the specialist's knowledge
        if first.worker not in answered:
            query = context_query(state)
            if synthesis is not None:
                parts.append(Part(first.worker, "escalated", query, text, first))
            else:
                cover = covered.get((first.worker, first.instruction)) or next(
                    (c for (w, _), c in covered.items() if w == first.worker), None
                )
                if cover is not None:
                    body = restore(cover.answer, mapping)
                    parts.append(Part(first.worker, "escalated", query, body, first))
    done = {p.worker for p in parts}
    workers_in_plan = {r.worker for r in planned}
    for r in planned:
        if ok(r) or r.worker in done:
            continue
        cover = covered.get((r.worker, r.instruction))
        if cover is not None:
            parts.append(
                Part(r.worker, "covered", r.instruction, restore(cover.answer, mapping), r)
            )
        elif synthesis is not None:
            body = _tagged(text, r.worker)
            if not body and len(workers_in_plan) == 1:
                body = text
            if body:
                parts.append(Part(r.worker, "planned", r.instruction, body, r))
        done.add(r.worker)
    return parts, answered


def checks(
    part: Part,
    state: dict[str, Any],
    settings: LearningSettings,
    curated: Sequence[LearnedPassage],
) -> tuple[dict[str, bool], str]:
    """The ``auto`` checks of one part, and a description of any conflict with the corpus."""
    notes = " ".join(state.get("notes") or [])
    calls: Sequence[CallRecord] = state.get("calls") or []
    route = state.get("route")
    words = TAG.sub("", part.text).split()  # a bare '[worker]' tag says nothing
    conflicts = find_conflicts(
        part.text,
        [_doc(p) for p in curated if not is_learned(p.source)],
        part.instruction,
    )
    conflict = "; ".join(dict.fromkeys(c.describe() for c in conflicts))
    refused = any("local_only" in c.error or "refus" in c.error for c in calls)
    result = {
        "supervisor_answered": part.kind == "covered"
        or _synthesized(calls) is not None
        or (part.kind in ("unrouted", "escalated") and _answered(calls)),
        "no_budget_stop": not state.get("budget_stop"),
        "no_privacy_stop": not state.get("egress_denied") and not refused,
        "in_time": "deadline" not in notes,
        "substantive": len(words) >= 2
        and len(part.text) <= settings.max_answer_chars
        and not REFUSAL.search(part.text),
        "restored": not PLACEHOLDER.search(part.text),
        "self_contained": not PASSAGE_TALK.match(part.text),
        "consistent_with_corpus": not conflicts,
        "standalone": route is None or not route.reason.startswith(FOLLOW_UP),
    }
    return result, conflict


def _doc(p: LearnedPassage) -> Any:
    from langchain_core.documents import Document

    return Document(page_content=p.text, metadata={"source": p.source, "chunk": p.chunk})


def routing_candidate(
    state: dict[str, Any], parts: Sequence[Part], answered: Sequence[str]
) -> Candidate | None:
    """The routing example a run suggests: the specialists whose knowledge answered it."""
    route = state.get("route")
    if route is None or route.kind == "supervisor":
        return None
    workers = list(dict.fromkeys([*answered, *(p.worker for p in parts)]))
    if route.kind == "direct" and state.get("escalated") and parts:
        workers = [parts[0].worker]
    if not workers:
        return None
    return Candidate(question=str(state["query"]), expected_workers=workers)


def redact_record(record: Record, redactor: Redactor) -> Record:
    """Fill the redacted copies an export writes (placeholders as the run used them)."""
    return record.model_copy(
        update={
            "answer_redacted": redactor.redact(record.answer),
            "instruction_redacted": redactor.redact(record.instruction),
            "passages_redacted": [
                p.model_copy(update={"text": redactor.redact(p.text)}) for p in record.passages
            ],
        }
    )
