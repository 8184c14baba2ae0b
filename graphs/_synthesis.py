"""Putting a planned answer together so it covers every part, and citing only what it keeps.

* :class:`Synthesis` — the supervisor's synthesis in the ``[planner] synthesis`` style:
  ``structured`` (one paragraph per part, the specialists' own answers, then a short joint
  conclusion) or ``prose`` (the supervisor writes it all; a part it leaves out is asked for
  once more or added from the specialist's answer).
* :func:`cited` — a worker result citing only the passages that state its answer.
* :func:`kept_citations` — the citations of the answers the final text kept.
* :func:`seen_passages` / :func:`in_context` — the passages a part's specialist saw, and
  the parts with a bare figure given the passage sentence that states it.

The coverage checks themselves are local text checks: :mod:`tandem.agents.coverage`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from langchain_core.documents import Document

from tandem.agents.coverage import (
    answer_part,
    checked_conclusion,
    is_answer,
    missing_parts,
    parts_in_order,
    structured_answer,
    supporting,
    with_context,
)
from tandem.agents.supervisor import Supervisor, split_concluded
from tandem.graphs._fallback import within
from tandem.graphs._memory_answer import FROM_MEMORY
from tandem.graphs._recheck import quoted, rechecked
from tandem.graphs._stream import TokenStream
from tandem.graphs.learning.recorder import COVERED
from tandem.graphs.learning.records import LearnedPassage
from tandem.graphs.runtime import Runtime
from tandem.graphs.state import SeenPassages, TandemState
from tandem.workers.records import CallRecord, Citation, WorkerResult

__all__ = ["Synthesis", "cited", "in_context", "kept_citations", "seen_passages"]


def seen_passages(state: TandemState, result: WorkerResult) -> list[LearnedPassage]:
    """The passages ``result``'s specialist saw for its subtask (the latest time)."""
    seen: Sequence[SeenPassages] = state.get("seen") or []
    for s in reversed(seen):
        if s.worker == result.worker and s.instruction == result.instruction:
            return list(s.passages)
    return []


def in_context(state: TandemState, results: Sequence[WorkerResult]) -> list[WorkerResult]:
    """The parts, a bare figure ("15%") followed by the sentence of its specialist's
    passages (cited ones first) that states it (:func:`~tandem.agents.coverage.with_context`):
    the 0.5B often answers with the figure alone, dropping its unit and conditions."""
    out = []
    for r in results:
        passages = seen_passages(state, r)
        cited = {(c.source, c.chunk) for c in r.citations}
        passages.sort(key=lambda p: (p.source, p.chunk) not in cited)
        out.append(with_context(r, [p.text for p in passages]))
    return out


def cited(result: WorkerResult, passages: Sequence[Document]) -> WorkerResult:
    """``result`` citing only the passages that state its answer (small models cite every
    passage they were shown)."""
    if result.status != "ok" or len(result.citations) < 2:
        return result
    by_key = {
        (str(d.metadata.get("source", "?")), int(d.metadata.get("chunk", 0))): d for d in passages
    }
    found = [c for c in result.citations if (c.source, c.chunk) in by_key]
    texts = [by_key[(c.source, c.chunk)].page_content for c in found]
    keep = supporting(result.answer, texts, result.instruction)
    if not keep:
        return result
    return result.model_copy(update={"citations": [found[i] for i in keep]})


def kept_citations(state: TandemState, text: str) -> list[Citation]:
    """Citations of the answers the final text kept (a dropped or failed part cites nothing)."""
    results = [r for r in state.get("results") or [] if is_answer(r)]
    if state.get("phase") == "direct" and state.get("escalated"):
        # The supervisor answered from the specialist's passages: its citations, not the
        # unreliable attempt's.
        results = [r for r in results if r.reason.startswith(COVERED)] or results
    served = [r for r in results if r.reason.startswith(FROM_MEMORY)]
    if served:  # the remembered answer replaced the specialist's unsure one: its citation
        results = served
    if state.get("phase") == "planned" and state.get("plan") is not None:
        parts = parts_in_order(state["plan"].subtasks, results)
        results = [r for r in parts if r not in missing_parts(text, [r])]
    citations: list[Citation] = []
    for r in results:
        citations.extend(c for c in r.citations if c not in citations)
    return citations


@dataclass
class Synthesis:
    """One planned answer's synthesis by ``sup``, streamed to ``stream`` (if any).

    Both styles return ``(text, calls, notes, added)`` (``added``: parts the supervisor
    answered itself); ``parts`` are the results in plan order
    and ``shown`` the same results as the supervisor may see them (redacted if remote).
    """

    rt: Runtime
    sup: Supervisor
    deadline: float | None
    stream: TokenStream | None

    def _send(self, text: str) -> None:
        if self.stream is not None and text:
            self.stream(text)

    async def structured(
        self,
        query: str,
        history: str,
        parts: list[WorkerResult],
        shown: list[WorkerResult],
        recheck: Mapping[int, Sequence[LearnedPassage]] | None = None,
    ) -> tuple[str, list[CallRecord], list[str], list[WorkerResult]]:
        """One paragraph per part (the specialists' answers), then the supervisor's short
        joint conclusion. The ``recheck`` parts (index into ``parts``: weak answers, with
        their specialist's passages) are answered by the supervisor from those passages in
        the same call; the parts before the first of them are shown at once, the rest when
        the call returns. Also returns the new results of the parts it answered."""
        recheck = recheck or {}
        first = min(recheck, default=len(parts))
        self._send(structured_answer(parts[:first]))
        raw, calls = await within(
            self.deadline,
            self.sup.conclude(
                query,
                shown,
                history=history,
                recheck={i: [(p.source, p.text) for p in ps] for i, ps in recheck.items()},
            ),
            "the conclusion",
            self.rt,
        )
        notes: list[str] = []
        added: list[WorkerResult] = []
        conclusion = raw
        if recheck:
            parts, shown = list(parts), list(shown)
            answers, conclusion = split_concluded(raw, recheck)
            for i, passages in sorted(recheck.items()):
                new = rechecked(parts[i], answers.get(i, ""), passages, self.sup.model)
                if new is None:
                    quote = await quoted(parts[i], passages, self.rt.embedder)
                    if quote is None:
                        notes.append(
                            f"the supervisor gave no answer to '{parts[i].worker}''s part that "
                            "its passages state; the specialist's answer is kept"
                        )
                        continue
                    notes.append(
                        f"the supervisor gave no answer to '{parts[i].worker}''s part that its "
                        f"passages state, and {quote.reason.split(': ', 1)[1]}: the passage "
                        "sentence that answers its question is quoted instead"
                    )
                    parts[i] = shown[i] = quote
                    added.append(quote)
                    continue
                said = (
                    "'s answer to its part was not reliable"
                    if is_answer(parts[i])
                    else " found its part not covered"
                )
                notes.append(
                    f"'{parts[i].worker}'{said}; the supervisor answered it from the "
                    f"{len(passages)} passages it retrieved, within the synthesis call"
                )
                parts[i] = shown[i] = new
                added.append(new)
        kept = checked_conclusion(conclusion, shown, query)
        if conclusion and not kept:
            notes.append("dropped the supervisor's conclusion: it stated numbers no answer gave")
        rest = structured_answer(parts[first:], kept)
        self._send(f"\n\n{rest}" if first and rest else rest)
        return structured_answer(parts, kept), calls, notes, added

    async def prose(
        self, query: str, history: str, parts: list[WorkerResult], shown: list[WorkerResult]
    ) -> tuple[str, list[CallRecord], list[str], list[WorkerResult]]:
        """The supervisor writes the answer; a part it leaves out is asked for once more
        (``reask``) or added from the specialist's answer (``append``)."""
        text, calls = await within(
            self.deadline,
            self.sup.synthesize(query, shown, history=history, on_token=self.stream),
            "the synthesis",
            self.rt,
        )
        notes: list[str] = []
        missing = missing_parts(text, shown)
        repair = self.rt.config.planner.repair
        if missing and (repair == "reask" or (repair == "auto" and self.sup.llm.where == "remote")):
            names = ", ".join(r.worker for r in missing)
            if self.stream is not None:
                self.stream.reset(f"the answer left out {names}; asking again")
            again, more = await within(
                self.deadline,
                self.sup.synthesize(
                    query, shown, history=history, on_token=self.stream, missing=missing, draft=text
                ),
                "the synthesis",
                self.rt,
            )
            calls = [*calls, *more]
            text = again
            notes.append(f"the synthesis left out {names}; asked the supervisor again")
            missing = missing_parts(text, shown)
        if missing:
            for r in missing:
                added = f"\n\n{answer_part(parts[shown.index(r)])}"
                text += added
                self._send(added)
            notes.append(
                "the synthesis left out "
                + ", ".join(f"{r.worker}'s part" for r in missing)
                + "; added the specialist's answer"
            )
        return text, calls, notes, []
