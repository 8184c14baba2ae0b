"""The cascade's middle step: local model → answer memory → supervisor.

When a direct answer may not stay local (graphs/cascade.py ``decide`` and
``trusted_memory`` both said no) and the specialist retrieved an approved learned passage
for this very question, the remembered supervisor answer is served instead of calling the
large model again — cited as ``learned:<id>`` and said in the notes and the route reason.

The passage is *for this very question* when all of these hold:

* it matched the question at least ``[learning] trust_memory_above`` (retrieval cosine) and
  is the best-matching learned passage the specialist saw;
* the question does not ask something else in the recorded question's words
  (:func:`tandem.workers.memory.asks_else`: no new name, acronym or figure, no swapped
  word);
* the remembered answer does not conflict with a curated passage the specialist retrieved
  (the curated corpus wins: then the supervisor answers, as before), and is an answer (not
  a refusal, not an echo of its question);
* and either the specialist's own answer rests on it (every checkable span of that answer
  is in the passage, at least half of its words are, and it is not an echo of the
  question — the small model read the passage as the answer, it only could not be
  trusted to say so), or the question itself is at least ``[learning] answer_memory_above``
  close to the recorded question (cosine of the run's embedding model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.documents import Document

from tandem.graphs.cascade import MIN_MEMORY_OVERLAP
from tandem.graphs.learning import LearnedPassage
from tandem.graphs.learning.recorder import REFUSAL
from tandem.graphs.runtime import Runtime
from tandem.workers.backends import cosine
from tandem.workers.grounding import content_words, find_spans, unsupported_spans
from tandem.workers.memory import asks_else, find_conflicts, is_learned, recorded
from tandem.workers.records import Citation, WorkerResult

__all__ = ["FROM_MEMORY", "memory_answer", "rests_on"]

FROM_MEMORY = "answered from answer memory"
"""How a result served from answer memory states its reason (and its note begins)."""


def rests_on(answer: str, question: str, passage: str) -> bool:
    """Whether ``answer`` repeats ``passage``: every checkable span of it is there, at least
    :data:`~tandem.graphs.cascade.MIN_MEMORY_OVERLAP` of its content words are, and some of
    them are not the question's own."""
    words = content_words(answer)
    if not words or unsupported_spans(find_spans(answer), passage):
        return False
    if len(words & content_words(passage)) / len(words) < MIN_MEMORY_OVERLAP:
        return False
    return bool(words - content_words(question))


def _seen(state: Mapping[str, Any], result: WorkerResult) -> list[LearnedPassage]:
    for item in reversed(state.get("seen") or []):
        if item.worker == result.worker and item.instruction == result.instruction:
            return list(item.passages)
    return []


async def memory_answer(
    rt: Runtime, state: Mapping[str, Any], result: WorkerResult
) -> tuple[WorkerResult, str] | None:
    """The remembered answer to serve instead of escalating ``result``, with a note; ``None``
    when no learned passage the specialist saw is for this question (see the module doc)."""
    settings = rt.config.learning
    trust = settings.trust_memory_above
    if trust is None or settings.memory == "off" or result.status != "ok":
        return None
    seen = _seen(state, result)
    learned = [p for p in seen if is_learned(p.source) and p.score is not None]
    if not learned:
        return None
    best = max(learned, key=lambda p: p.score or -1.0)
    score = float(best.score or -1.0)
    found = recorded(best.text)
    if score < trust or found is None:
        return None
    question = result.instruction
    asked, answer = found
    body = answer.strip()
    if not body or REFUSAL.search(body) or content_words(body) <= content_words(asked):
        return None  # nothing remembered worth serving (an echo says nothing)
    if asks_else(question, asked, body):
        return None
    curated = [
        Document(page_content=p.text, metadata={"source": p.source, "chunk": p.chunk})
        for p in seen
        if not is_learned(p.source)
    ]
    if find_conflicts(body, curated, question, source=best.source):
        return None  # the curated corpus wins: the supervisor answers, as before
    if rests_on(result.answer, question, best.text):
        how = "the specialist's answer rests on it"
    else:
        vector = state.get("query_vector")
        bar = settings.answer_memory_above
        if bar is None or vector is None:
            return None
        try:
            res = await rt.embedder.embed([asked])
        except Exception:  # answer memory is a shortcut, never a reason to fail the run
            return None
        close = cosine(vector, res.vectors[0])
        if close < bar:
            return None
        how = f"the question is {close:.2f} close to the recorded one"
    record = best.source.removeprefix("learned:")
    note = (
        f"{FROM_MEMORY}: '{result.worker}' was not confident, so the remembered supervisor "
        f"answer {best.source} (record {record}, similarity {score:.2f}; {how}) was served "
        "instead of calling the supervisor"
    )
    served = result.model_copy(
        update={
            "answer": body,
            "citations": [Citation(worker=result.worker, source=best.source, chunk=best.chunk)],
            "reason": note,
            "needs_escalation": False,
        }
    )
    return served, note
